"""One bounded wait for a whole load (loader.connect.connect_all), over real CA.

Dead PVs cost one timeout, not one per device; a device whose signals are still
connecting when the build ends is not cut off just because building used up the
timeout (a thousand motors take seconds of CPU to build).
"""
from __future__ import annotations

import time

from ophyd import Component, Device, EpicsSignalRO

from ca_helpers import wait_for
from loader.connect import connect_all


class HalfServed(Device):
    """One PV the gp: IOC serves, one it does not."""
    served = Component(EpicsSignalRO, "m1.RBV")
    missing = Component(EpicsSignalRO, "no_such_record.VAL")


class Unserved(Device):
    missing = Component(EpicsSignalRO, "no_such_record.VAL")


def test_partly_connected_device_gets_the_patience_even_with_no_time_left(gp_ioc):
    device = HalfServed("gp:", name="half")
    wait_for(lambda: device.served.connected, timeout=10, message="gp:m1.RBV")
    t0 = time.monotonic()
    outcome = connect_all({"half": device}, timeout=0.0, configured_timeout=1.0)  # built in all the time
    waited = time.monotonic() - t0
    assert waited >= 0.9, f"cut off although its signals connected while it was built: {outcome}"
    assert "gp:no_such_record.VAL" in outcome["half"] and "1 of 2 PVs not connected" in outcome["half"]
    device.destroy()


def test_dead_devices_cost_one_timeout_in_total(gp_ioc):
    devices = {f"dead{i}": Unserved("gp:", name=f"dead{i}") for i in range(5)}
    t0 = time.monotonic()
    outcome = connect_all(devices, timeout=0.5, patience=3.0)
    waited = time.monotonic() - t0
    assert all("timed out after 0.5 s" in reason for reason in outcome.values())
    assert waited < 1.5, f"waited {waited:.1f} s for 5 dead devices with a 0.5 s timeout"
    for device in devices.values():
        device.destroy()


def test_live_devices_connect_inside_the_wait(gp_ioc):
    from ophyd import EpicsMotor
    motors = {f"m{i}": EpicsMotor(f"gp:m{i}", name=f"m{i}") for i in range(1, 5)}
    outcome = connect_all(motors, timeout=10.0)
    assert outcome == {name: None for name in motors}
    assert all(m.connected for m in motors.values())


class TouchesItsLazyPart(Device):
    """Like ``SingleTrigger`` taking ``cam.acquire``: the constructor touches a lazy part."""
    part = Component(Unserved, "", lazy=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kept = self.part


def test_constructors_touching_lazy_parts_do_not_wait_outside_the_load(gp_ioc):
    """ophyd waits up to 10 s for a lazy part a constructor touches, past the load's
    deadline (an area detector on a slow IOC held a load for 10 s); while the loader
    builds, the part is made without that wait and joins the load's one wait."""
    from ophyd import Device as OphydDevice

    from loader.instantiate import lazy_components_connect_later
    assert OphydDevice.lazy_wait_for_connection is True       # ophyd's default: it would wait
    with lazy_components_connect_later():
        t0 = time.monotonic()
        device = TouchesItsLazyPart("gp:", name="touches")
        built = time.monotonic() - t0
    assert OphydDevice.lazy_wait_for_connection is True       # restored after the build
    assert built < 2.0, f"the constructor waited {built:.1f} s for its lazy part"
    outcome = connect_all({"touches": device}, timeout=0.5)
    assert "gp:no_such_record.VAL" in outcome["touches"]      # the part is in the one wait
    device.destroy()


def test_a_long_wait_says_what_it_waits_for(gp_ioc, caplog):
    """An IOC that is down must not look like a silent pause of a whole timeout."""
    from ophyd import EpicsMotor
    devices = {"m1": EpicsMotor("gp:m1", name="m1"), "dead0": Unserved("gp:", name="dead0")}
    caplog.set_level("INFO", logger="loader.connect")
    outcome = connect_all(devices, timeout=1.5, patience=1.5, report_after=0.5)
    assert outcome["m1"] is None and "timed out" in outcome["dead0"]
    said = [r.getMessage() for r in caplog.records if r.name == "loader.connect" and r.levelname == "INFO"]
    assert said, "nothing said while waiting"
    assert "1 of 2 devices connected; waiting for dead0 (giving up in" in said[0], said
    devices["dead0"].destroy()


def test_a_long_build_says_how_far_it_is(gp_ioc, caplog):
    """Building a thousand motors takes seconds of CPU: the build reports its progress
    (here from its first device on, ``report_after=0``)."""
    from loader.classes import import_classes
    from loader.instantiate import build_all
    from test_loader import motor_item
    items = [motor_item(f"m{i}", f"gp:m{i}") for i in range(1, 5)]
    classes, errors = import_classes([i.device_class for i in items], ["loader.devices"])
    assert not errors
    caplog.set_level("INFO", logger="loader.instantiate")
    built, failed, unreachable, _ = build_all(items, classes, time.monotonic() + 10, report_after=0.0)
    assert sorted(built) == ["m1", "m2", "m3", "m4"] and not failed and not unreachable
    said = [r.getMessage() for r in caplog.records if r.name == "loader.instantiate"]
    assert said and said[0] == "building: 1 of 4 devices built", said
    for device in built.values():
        device.destroy()


class TwoRecords(Device):
    """Two records that are never served at the same time here (see the test below)."""
    first = Component(EpicsSignalRO, "s1:ao0")
    second = Component(EpicsSignalRO, "s2:ao0")


def test_a_device_whose_first_ioc_went_away_while_it_waited_is_not_reported_connected(tmp_path):
    """The wait looks at a device's connected signals only once (a thousand motors
    made it look at ~20,000 signals 50 times a second); before a device is reported
    connected, all of them are looked at again.  Here ``first`` connects, its IOC
    dies, and the IOC comes back serving only ``second``: without that last look the
    device was reported connected with ``first`` down.  A softIoc of this test's own
    (no other test holds its channels, so killing it disturbs nobody)."""
    import threading

    from conftest import PORTS
    from iocs.softioc import SoftIoc, ao_database
    device = TwoRecords("", name="two")
    outcome: dict = {}
    waiting = threading.Thread(
        target=lambda: outcome.update(connect_all({"two": device}, timeout=20.0, patience=2.0)))
    ioc = SoftIoc(ao_database(tmp_path / "first.db", "s1:", 1), PORTS["scratch"]).start()
    try:
        waiting.start()
        wait_for(lambda: device.first.connected, timeout=10, message="s1:ao0 connected")
        ioc.stop()
        wait_for(lambda: not device.first.connected, timeout=10, message="s1:ao0 disconnected")
        ioc = SoftIoc(ao_database(tmp_path / "second.db", "s2:", 1), PORTS["scratch"]).start()
        waiting.join(30)
        assert not waiting.is_alive(), "the wait did not end"
        assert device.second.connected
        assert outcome["two"] is not None and "s1:ao0" in outcome["two"], outcome
    finally:
        ioc.stop()
        device.destroy()
