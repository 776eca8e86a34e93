"""Faults (issue 8): IOCs that are down at load or die in the middle of a scan, a
callback that raises, a data directory that cannot be written or is full.

Every test uses the real simulated IOCs (conftest's ``gp_ioc_process`` and
``ad_ioc_process``), kills them itself and leaves them running again.  Waits are
bounded; the times measured are printed (``pytest -s``) for the README.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from bluesky import plans as bp

from ca_helpers import wait_for
from session_support import data_directory, event_column, measured

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CONNECTION_TIMEOUT = 3.0        # the YAML's epics.connection_timeout in these tests
# a constructor that reads PVs (adsimdet, scaler1) may start its last attempt just
# before the deadline; ophyd gives that attempt its own 1 s connection timeout
CONNECT_PHASE_MARGIN = 1.5
# validation, setup actions and the session (RunEngine, catalog, callbacks)
LOAD_MARGIN = 8.0
RECONNECT_TIMEOUT = 30.0        # after an IOC restarts (beacons via the loopback repeater)

MEASURED: dict[str, float] = {}


def config_copy(tmp_path: Path, **changes) -> Path:
    """The training YAML with ``changes`` (section -> dict merged in), beside ``tmp_path``."""
    from loader.config import CHECKOUT_CONFIG_DIR
    config = yaml.safe_load((CHECKOUT_CONFIG_DIR / "training.yml").read_text())
    config["happi"] = str((CHECKOUT_CONFIG_DIR / config["happi"]).resolve())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    path = tmp_path / "training.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def running_again(*iocs):
    """Whatever the test does to ``iocs``, they serve again afterwards."""
    try:
        yield
    finally:
        for ioc in iocs:
            if not ioc.running:
                ioc.start()


def reconnected(devices, what: str) -> float:
    """Seconds until every one of ``devices`` is connected again (bounded)."""
    t0 = time.monotonic()
    wait_for(lambda: all(d.connected for d in devices), RECONNECT_TIMEOUT, message=what)
    took = time.monotonic() - t0
    MEASURED[what] = took
    print(f"\n{what}: {took:.2f} s")
    return took


# -- an IOC down at load -------------------------------------------------------------

def test_ad_ioc_down_at_load_then_back_with_reload(gp_ioc, ad_ioc_process, tmp_path):
    from loader import load_beamline
    from loader.beamline import NOT_CONNECTED

    config = config_copy(tmp_path, epics={"connection_timeout": CONNECTION_TIMEOUT})
    with running_again(ad_ioc_process), data_directory(tmp_path / "data"):
        ad_ioc_process.kill()
        t0 = time.monotonic()
        bl = load_beamline("training", config=config)
        took = time.monotonic() - t0
        MEASURED["load with the ad IOC down"] = took
        print(f"\nload with ad: down: {took:.2f} s ({bl.timings})")
        assert bl.session_error is None
        # one bounded wait for everything, however many devices are missing
        assert bl.timings["instantiate"] + bl.timings["connect"] <= CONNECTION_TIMEOUT + CONNECT_PHASE_MARGIN
        assert took <= CONNECTION_TIMEOUT + LOAD_MARGIN

        row = {r.name: r for r in bl.status()}["adsimdet"]
        assert row.state == NOT_CONNECTED
        assert "ad:" in row.reason and f"{CONNECTION_TIMEOUT:g} s" in row.reason
        assert "adsimdet" not in bl and "adsimdet" in str(bl.status())
        ready = [r.name for r in bl.status() if r.ok]
        assert {"m1", "noisy", "scaler1", "temperature", "calcs"} <= set(ready)
        assert len(ready) == len(bl.status()) - 1

        # the gp: devices work
        uid, = bl.RE(bp.scan([bl.noisy], bl.m1, -0.1, 0.1, 3))
        assert bl.cat[uid].metadata["stop"]["exit_status"] == "success"

        ad_ioc_process.start()
        t0 = time.monotonic()
        changes = bl.reload()
        MEASURED["reload after the ad IOC came back"] = time.monotonic() - t0
        assert changes == {"added": [], "removed": [], "changed": []}
        assert {r.name: r for r in bl.status()}["adsimdet"].ok
        assert bl.adsimdet.connected
        assert bl.adsimdet.cam.acquire_time.get() >= 0
        assert not bl.status().failed


def test_gp_ioc_down_at_load_costs_one_timeout_not_one_per_device(gp_ioc_process, ad_ioc, tmp_path):
    """22 devices on the dead IOC: the load still waits once."""
    from loader import load_beamline
    from loader.beamline import NOT_CONNECTED

    config = config_copy(tmp_path, epics={"connection_timeout": CONNECTION_TIMEOUT})
    with running_again(gp_ioc_process), data_directory(tmp_path / "data"):
        gp_ioc_process.kill()
        t0 = time.monotonic()
        bl = load_beamline("training", config=config)
        took = time.monotonic() - t0
        MEASURED["load with the gp IOC down"] = took
        print(f"\nload with gp: down: {took:.2f} s\n{bl.status()}")
        failed = bl.status().failed
        assert len(failed) >= 20
        assert all(r.state == NOT_CONNECTED and "timed out" in r.reason for r in failed)
        assert {r.name for r in failed} >= {"m1", "m16", "noisy", "scaler1", "calcs", "gp_stats"}
        assert bl.timings["instantiate"] + bl.timings["connect"] <= CONNECTION_TIMEOUT + CONNECT_PHASE_MARGIN
        assert took <= CONNECTION_TIMEOUT + LOAD_MARGIN
        assert bl.adsimdet.connected                      # the other IOC's device is there
        assert bl.session_error is None and bl.RE is not None
