"""Synthetic happi databases for the scaling benchmark."""
from __future__ import annotations

import json
from pathlib import Path


def motor_database(path: Path, count: int, prefix: str = "gp:", dead_fraction: float = 0.0,
                   dead_prefix: str = "nowhere:", beamline: str = "bench",
                   device_class: str = "loader.devices.motor.EpicsMotorWithSREV") -> Path:
    """``count`` motor entries; every ``1/dead_fraction``-th points at PVs no IOC serves."""
    every = round(1 / dead_fraction) if dead_fraction else 0
    entries = {}
    for i in range(1, count + 1):
        dead = bool(every) and i % every == 0
        name = f"mot{i}"
        entries[name] = {
            "_id": name,
            "name": name,
            "type": "beamline.containers.BeamlineItem",
            "device_class": device_class,
            "args": ["{{prefix}}"],
            "kwargs": {"name": "{{name}}", "labels": "{{labels}}"},
            "prefix": f"{dead_prefix if dead else prefix}m{i}",
            "beamline": beamline,
            "labels": ["motor"],
            "active": True,
            "documentation": "synthetic motor for the scaling benchmark",
        }
    path.write_text(json.dumps(entries, indent=2))
    return path
