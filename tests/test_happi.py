"""The happi side: the container is registered, `happi search` works from the
repository root through happi.cfg, and the database holds the training devices."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def happi_cli(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("HAPPI_CFG", "XDG_CONFIG_HOME")}
    done = subprocess.run([sys.executable, "-m", "happi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def names_in(table_output: str) -> set[str]:
    return {line.split("|")[2].strip() for line in table_output.splitlines()
            if line.startswith("| name ")}


def test_container_is_registered():
    from happi.containers import registry
    from loader.containers import BeamlineItem
    assert registry["beamline.containers.BeamlineItem"] is BeamlineItem
    assert "beamline.containers.BeamlineItem" in happi_cli("container-registry")


def test_container_requires_beamline_and_checks_labels():
    from happi.errors import EnforceError
    from loader.containers import BeamlineItem
    item = BeamlineItem(name="m1", beamline="training", labels=["motor"], prefix="gp:m1",
                        device_class="ophyd.EpicsMotor")
    assert item.args == ["{{prefix}}"] and item.kwargs == {"name": "{{name}}", "labels": "{{labels}}"}
    assert "beamline" in item.mandatory_info
    with pytest.raises(EnforceError):
        item.labels = "motor"


def test_happi_search_from_repo_root():
    assert names_in(happi_cli("search", "beamline=training")) == {
        *(f"m{i}" for i in range(1, 17)), "scaler1", "noisy", "temperature", "calcs",
        "calcouts", "gp_stats", "shutter", "adsimdet"}
    assert names_in(happi_cli("search", "labels=*motor*")) == {f"m{i}" for i in range(1, 17)}
    assert names_in(happi_cli("search", "name=m1")) == {"m1"}


def test_client_reads_entries_as_beamline_items():
    import happi
    from loader.containers import BeamlineItem
    client = happi.Client(path=str(ROOT / "happi_db.json"))
    item = client.find_item(name="scaler1")
    assert isinstance(item, BeamlineItem)
    assert (item.beamline, item.prefix, item.labels) == ("training", "gp:scaler1", ["scalers", "detectors"])


def test_every_entry_stores_the_searched_fields():
    """happi searches stored values only: beamline, labels, args, kwargs are explicit."""
    docs = json.loads((ROOT / "happi_db.json").read_text())
    for name, doc in docs.items():
        assert doc["_id"] == doc["name"] == name
        for key in ("beamline", "labels", "args", "kwargs", "active", "device_class", "type"):
            assert key in doc, (name, key)
