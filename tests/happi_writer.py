"""Child process of tests/test_happi_concurrent.py: add entries through a happi client.

``python happi_writer.py DB NAME[,NAME...] [plain]``: prints ``ready``, waits for a
line on stdin (so all writers start together), adds one motor entry per name and
prints a JSON summary ``{"added": [...], "conflicts": [...]}``.
"""
from __future__ import annotations

import json
import sys

import happi
from happi.errors import DuplicateError


def main(db: str, names: list[str], plain: bool = False) -> dict:
    if plain:
        client = happi.Client(path=db)
    else:
        from loader.happi_edit import open_client
        client = open_client(db)
    print("ready", flush=True)
    sys.stdin.readline()
    added, conflicts = [], []
    for name in names:
        item = client.create_item(
            "beamline.containers.BeamlineItem", name=name, beamline="training",
            device_class="loader.devices.motor.EpicsMotorWithSREV", prefix=f"gp:{name}",
            labels=["motor"], active=True, args=["{{prefix}}"],
            kwargs={"name": "{{name}}", "labels": "{{labels}}"},
            documentation=f"added by writer {sys.argv[0]} pid {__import__('os').getpid()}")
        try:
            client.add_item(item)
            added.append(name)
        except DuplicateError as exc:
            conflicts.append(f"{name}: {exc}")
    return {"added": added, "conflicts": conflicts}


if __name__ == "__main__":
    summary = main(sys.argv[1], sys.argv[2].split(","), plain=len(sys.argv) > 3 and sys.argv[3] == "plain")
    print(json.dumps(summary), flush=True)
