"""Devices whose IOC answers are built before those whose IOC does not
(``loader/probe_order.py``): libca's search falls back to one UDP frame per try
after any unanswered name, so dead names among the live ones held a
thousand-motor load back by seconds (BENCHMARKS.md).  Against the simulated gp IOC."""
from __future__ import annotations

import time

from ca_helpers import wait_for
from loader.classes import import_classes
from loader.connect import connect_all
from loader.instantiate import build_all
from loader.probe_order import answered_first, probe_pv
from test_connect import HalfServed
from test_loader import motor_item


def _classes(items):
    classes, errors = import_classes([i.device_class for i in items], ["loader.devices"])
    assert not errors
    return classes


def test_a_device_is_probed_on_its_first_plain_epics_signal():
    from loader.devices.area_detector import SimDetectorV34
    from loader.devices.motor import EpicsMotorWithSREV
    motor = motor_item("m1", "gp:m1")
    assert probe_pv(motor, EpicsMotorWithSREV) == "gp:m1.RBV"
    # an area detector has sub-devices only: nothing to probe, it is built first
    assert probe_pv(motor_item("det", "ad:"), SimDetectorV34) is None


def test_devices_whose_ioc_answers_are_built_first(gp_ioc):
    items = [motor_item("dead1", "nowhere:m1"), motor_item("m5", "gp:m5"),
             motor_item("dead2", "nowhere:m2"), motor_item("m6", "gp:m6")]
    classes = _classes(items)
    silent: dict[str, float] = {}
    before = time.monotonic()
    assert [i.name for i in answered_first(items, classes, silent=silent)] == ["m5", "m6", "dead1", "dead2"]
    assert sorted(silent) == ["dead1", "dead2"]     # with the time their PV was first searched
    assert all(before <= at <= time.monotonic() for at in silent.values())
    order: list[str] = []
    built, failed, unreachable, _ = build_all(items, classes, time.monotonic() + 10, workers=1,
                                              after_build=lambda obj: order.append(obj.name))
    try:
        assert order == ["m5", "m6", "dead1", "dead2"]     # one builder: in the order handed out
        assert sorted(built) == ["dead1", "dead2", "m5", "m6"] and not failed and not unreachable
    finally:
        for device in built.values():
            device.destroy()


def test_a_silent_device_is_given_up_one_timeout_after_its_search_while_others_progress(gp_ioc):
    """A thousand live motors keep connecting for longer than a timeout; a dead entry
    then waited a whole timeout more.  ``patience`` stands in for that: the
    half-served device keeps the wait open 4 s, the dead motor whose PV went
    unanswered is given up 1 s (the timeout) after its search."""
    items = [motor_item("dead1", "nowhere:m1")]
    silent: dict[str, float] = {}
    built, _, _, _ = build_all(items, _classes(items), time.monotonic() + 10, silent=silent)
    assert list(silent) == ["dead1"]
    half = HalfServed("gp:", name="half")
    try:
        wait_for(lambda: half.served.connected, timeout=10, message="gp:m1.RBV")
        times: dict[str, float] = {}
        outcome = connect_all({"half": half, "dead1": built["dead1"]}, timeout=0.0, configured_timeout=1.0,
                              patience=4.0, times=times, searched_since=silent)
        assert outcome["dead1"].startswith("connection timed out after 1 s: 20 of 20 PVs not connected")
        assert times["half"] >= 3.9, outcome
        assert times["dead1"] < 2.0, f"the dead motor waited {times['dead1']:.1f} s for the live device"
    finally:
        half.destroy()
        built["dead1"].destroy()
