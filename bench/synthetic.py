"""Synthetic happi databases for the scaling and reference-IOC benchmarks."""
from __future__ import annotations

import json
from pathlib import Path


def _entry(name: str, prefix: str, device_class: str, beamline: str, labels: list[str],
           documentation: str) -> dict:
    return {
        "_id": name,
        "name": name,
        "type": "beamline.containers.BeamlineItem",
        "device_class": device_class,
        "args": ["{{prefix}}"],
        "kwargs": {"name": "{{name}}", "labels": "{{labels}}"},
        "prefix": prefix,
        "beamline": beamline,
        "labels": labels,
        "active": True,
        "documentation": documentation,
    }


def _write(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({e["name"]: e for e in entries}, indent=2))
    return path


def motor_database(path: Path, count: int, prefix: str = "gp:", dead_fraction: float = 0.0,
                   dead_prefix: str = "nowhere:", beamline: str = "bench",
                   device_class: str = "loader.devices.motor.EpicsMotorWithSREV") -> Path:
    """``count`` motor entries; every ``1/dead_fraction``-th points at PVs no IOC serves."""
    every = round(1 / dead_fraction) if dead_fraction else 0
    return _write(path, [
        _entry(f"mot{i}", f"{dead_prefix if bool(every) and i % every == 0 else prefix}m{i}",
               device_class, beamline, ["motor"], "synthetic motor for the scaling benchmark")
        for i in range(1, count + 1)])


def calcout_database(path: Path, count: int, prefix: str, beamline: str = "reference",
                     device_class: str = "apstools.synApps.CalcoutRecord") -> Path:
    """``count`` entries ``calcout1..`` on the records of :func:`iocs.softioc.calcout_database`."""
    return _write(path, [
        _entry(f"calcout{i}", f"{prefix}{i}", device_class, beamline, ["calc"],
               "calcout record served by EPICS's own softIoc")
        for i in range(1, count + 1)])
