"""Devices whose IOC answers are built before those whose IOC does not
(``loader/probe_order.py``): libca's search falls back to one UDP frame per try
after any unanswered name, so dead names among the live ones held a
thousand-motor load back by seconds (BENCHMARKS.md).  Against the simulated gp IOC."""
from __future__ import annotations

import time

from loader.classes import import_classes
from loader.instantiate import build_all
from loader.probe_order import answered_first, probe_pv
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
    assert [i.name for i in answered_first(items, classes)] == ["m5", "m6", "dead1", "dead2"]
    order: list[str] = []
    built, failed, unreachable, _ = build_all(items, classes, time.monotonic() + 10, workers=1,
                                              after_build=lambda obj: order.append(obj.name))
    try:
        assert order == ["m5", "m6", "dead1", "dead2"]     # one builder: in the order handed out
        assert sorted(built) == ["dead1", "dead2", "m5", "m6"] and not failed and not unreachable
    finally:
        for device in built.values():
            device.destroy()
