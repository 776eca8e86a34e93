"""``load: lazy``: a device's signals built on first use, its PVs still connected
and checked by the load (loader/lazy_signals.py), against the simulated ``gp:``
and ``ad:`` IOCs.  Also: a lazy component touched after any load waits for its
connection, as ophyd intends."""
from __future__ import annotations

import gc
import json
import time

import pytest
import yaml
from apstools.synApps import SwaitRecord, UserCalcsDevice
from ophyd import Component, Device, EpicsSignal, EpicsSignalRO

from loader import load_beamline
from loader.lazy_signals import is_lazy, lazy_class, planned_channels
from test_loader import copy_config


class OwnSignal(EpicsSignal):
    """A signal class with its own constructor: its PV names cannot be foreseen."""

    def __init__(self, suffix, **kwargs):
        super().__init__(suffix + ":own", **kwargs)


class Mixed(Device):
    plain = Component(EpicsSignalRO, "plain")
    own = Component(OwnSignal, "x")


def lazy_config(tmp_path, lazy: list[str], labels: list[str], extra: dict | None = None,
                setup: dict | None = None):
    cfg, db = copy_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    config["load"] = {"labels": labels, "lazy": lazy}
    config["setup"] = setup or {}
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    if extra:
        docs = json.loads(db.read_text())
        docs.update(extra)
        db.write_text(json.dumps(docs, indent=2))
    return cfg


def test_lazy_class_defers_the_signals_and_keeps_the_class():
    lazy = lazy_class(UserCalcsDevice)
    assert issubclass(lazy, UserCalcsDevice) and lazy is not UserCalcsDevice
    assert (lazy.__name__, lazy.__module__) == ("UserCalcsDevice", UserCalcsDevice.__module__)
    assert lazy_class(UserCalcsDevice) is lazy, "made once per class"
    assert lazy._sig_attrs["enable"].lazy
    calc = lazy._sig_attrs["calc1"]
    assert not calc.lazy, "sub-devices are built with the device: they know their PV names"
    assert issubclass(calc.cls, SwaitRecord) and calc.cls._sig_attrs["calculation"].lazy
    channel_a = calc.cls._sig_attrs["channels"].cls._sig_attrs["A"].cls
    assert channel_a._sig_attrs["input_pv"].lazy
    # apstools' own classes are untouched
    assert not UserCalcsDevice._sig_attrs["enable"].lazy
    assert not SwaitRecord._sig_attrs["calculation"].lazy

    mixed = lazy_class(Mixed)
    assert mixed._sig_attrs["plain"].lazy and not mixed._sig_attrs["own"].lazy


def test_a_lazy_device_connects_its_pvs_and_builds_signals_on_first_use(gp_ioc, tmp_path):
    cfg = lazy_config(tmp_path, ["calcs"], ["calcs"])
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        assert [r.name for r in bl.status().failed] == [], str(bl.status())
        calcs, calcouts = bl.calcs, bl.calcouts
        assert is_lazy(calcs) and not is_lazy(calcouts) and isinstance(calcs, UserCalcsDevice)
        assert len(list(calcouts.walk_signals())) > 900, "a device not named is built as before"
        assert list(calcs.walk_signals()) == [], "nothing built at load"
        channels = planned_channels(calcs)
        assert all(ch.connected for ch in channels)
        # the very PVs apstools' device opens when built the usual way
        eager = UserCalcsDevice("gp:", name="eager")
        try:
            expected = {pv for walk in eager.walk_signals() for pv in
                        (walk.item.pvname, getattr(walk.item, "setpoint_pvname", None)) if pv}
        finally:
            eager.destroy()
        assert {ch.pvname for ch in channels} == expected
        assert len(expected) > 600 and "gp:userCalc3.INCN" in expected

        # findpv knows the signal before it is built, and does not build it
        assert bl.findpv("gp:userCalc5.CALC") == {"read": ["calcs.calc5.calculation"],
                                                  "write": ["calcs.calc5.calculation"]}
        assert "calculation" not in calcs.calc5._signals

        # first use: connected, with ophyd's metadata, at once (the channel was open)
        t0 = time.monotonic()
        scan = calcs.calc5.scanning_rate
        took = time.monotonic() - t0
        assert scan.connected and "Passive" in scan.enum_strs
        assert scan.get(as_string=True) in scan.enum_strs
        assert calcs.calc5.precision.get() >= 0
        print(f"first use of a lazy signal: {took * 1000:.1f} ms")
        calcs.calc5.description.put("lazy test")
        assert calcs.calc5.description.get(use_monitor=False) == "lazy test"

        # touching one field makes that record's other fields with it, connected;
        # its channels (sub-devices) and the other records are left alone
        record = calcs.calc6
        assert record._signals.keys() == {"channels"}
        record.output_link_pv.get()
        own = [attr for attr, cpt in type(record)._sig_attrs.items() if not cpt.is_device]
        assert set(own) <= record._signals.keys()
        assert all(record._signals[attr].connected for attr in own)
        assert record.channels.A._signals == {} and calcs.calc7.channels._signals.keys() == set("ABCDEFGHIJKL")
        assert list(calcs.calc7.walk_signals()) == []
    finally:
        for obj in bl.devices.values():
            obj.destroy()


def test_a_device_destroyed_on_a_lazy_devices_pvs_leaves_its_channels_open(gp_ioc, tmp_path):
    """pyepics shares one channel per PV name, and ophyd clears the channel of each PV
    it releases: a setup step's own swait record (made while ``calcs`` was not
    connected, destroyed after) took ``calcs``' channels with it, and ``calcs`` never
    connected again, even once its IOC was back (test_faults' IOC-down load, which
    failed that way).  Here: the channels the load opened are still libca's, live."""
    from apstools.synApps import UserCalcN
    from epics import ca
    cfg = lazy_config(tmp_path, ["calcs"], ["calcs"])
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        assert [r.name for r in bl.status().failed] == [], str(bl.status())
        on_calc9 = [ch for ch in planned_channels(bl.calcs) if ch.pvname.startswith("gp:userCalc9")]
        assert len(on_calc9) > 60
        opened = {ch.pvname: ca.get_cache(ch.pvname).chid.value for ch in on_calc9}
        own = UserCalcN("gp:userCalc9", name="own")
        own.wait_for_connection(timeout=10)
        seen = []
        own.calculated_value.subscribe(lambda value, **kw: seen.append(value), run=False)   # a monitor
        own.destroy()       # (its monitor goes with it: test_bulk_metadata, on the softIoc)
        del own
        gc.collect()
        for name, chid in opened.items():
            entry = ca.get_cache(name)
            assert entry is not None and entry.chid.value == chid, f"{name}: its channel was cleared"
            assert ca.isConnected(entry.chid) and entry.callbacks, name
        # the IOC's updates reach the lazy device, and no longer the destroyed one's
        # monitor (left subscribed, it called into a freed PV: the process crashed)
        seen.clear()
        record = bl.calcs.calc9
        record.channels.A.input_value.put(4.5, wait=True)
        record.calculation.put("A", wait=True)
        record.process_record.put(1, wait=True)
        assert record.calculated_value.get(use_monitor=False) == 4.5
        time.sleep(0.3)
        assert seen == []
        assert bl.calcs.calc9.description.connected
        bl.calcs.calc9.description.put("still here", wait=True)
        assert bl.calcs.calc9.description.get(use_monitor=False) == "still here"
        assert not bl.status().failed, str(bl.status())
    finally:
        for obj in bl.devices.values():
            obj.destroy()


def test_a_lazy_motor_moves_and_knows_its_limits(gp_ioc, tmp_path):
    """``EpicsMotor`` subscribes to its readback and done-moving signals: those are
    built at load anyway; the rest come on first use (the first move)."""
    cfg = lazy_config(tmp_path, ["m3"], ["motor"])
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        m3 = bl.m3
        assert is_lazy(m3) and not is_lazy(bl.m4)
        built = len(list(m3.walk_signals()))
        assert built < len(list(bl.m4.walk_signals())) / 2
        assert all(ch.connected for ch in planned_channels(m3))
        low, high = m3.limits
        assert low < high, "limits from the setpoint's control limits"
        target = m3.position + 0.25
        m3.move(target, wait=True, timeout=20)
        assert m3.position == pytest.approx(target, abs=0.01)
        assert m3.user_setpoint.get() == pytest.approx(target)
        assert m3.egu == bl.m4.egu
    finally:
        for obj in bl.devices.values():
            obj.destroy()


def test_reload_rebuilds_a_device_whose_laziness_was_edited(gp_ioc, tmp_path):
    cfg = lazy_config(tmp_path, [], ["calcs"])
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        assert not is_lazy(bl.calcs) and not is_lazy(bl.calcouts)
        config = yaml.safe_load(cfg.read_text())
        config["load"]["lazy"] = ["calcouts"]
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        assert bl.reload() == {"added": [], "removed": [], "changed": ["calcouts"]}
        assert is_lazy(bl.calcouts) and bl.status().failed == []
        assert all(ch.connected for ch in planned_channels(bl.calcouts))
    finally:
        for obj in bl.devices.values():
            obj.destroy()


def test_enabling_a_lazy_calcs_builds_only_the_enables(gp_ioc, tmp_path):
    """``enable_calcs`` writes each record's Enable PV: it must not make the records'
    other fields (asking a lazy record whether it has ``enable`` did, 0.3-0.6 s)."""
    cfg = lazy_config(tmp_path, ["calcs"], ["calcs"], setup={"calcs": [{"action": "enable_calcs"}]})
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        assert bl.status().failed == [], str(bl.status())
        for i in range(1, 11):
            record = getattr(bl.calcs, f"calc{i}")
            assert set(record._signals) == {"channels", "enable"}, record.name
            assert record.enable.get(use_monitor=False) == 1
        assert bl.calcs.enable.get(use_monitor=False) == 1
    finally:
        for obj in bl.devices.values():
            obj.destroy()


def test_a_missing_pv_of_a_lazy_device_is_reported_at_load(gp_ioc, tmp_path):
    # a motor record is not an swait record: DESC, PREC, SCAN exist, CALC and INAN do not
    entry = {"notacalc": {"_id": "notacalc", "name": "notacalc", "beamline": "training",
                          "prefix": "gp:m1", "labels": ["wrong"], "active": True,
                          "device_class": "apstools.synApps.SwaitRecord",
                          "args": ["{{prefix}}"], "kwargs": {"name": "{{name}}"},
                          "type": "beamline.containers.BeamlineItem"}}
    cfg = lazy_config(tmp_path, ["notacalc"], ["wrong"], extra=entry)
    t0 = time.monotonic()
    bl = load_beamline("training", config=cfg, session=False, timeout=3)
    elapsed = time.monotonic() - t0
    row = {r.name: r for r in bl.status()}["notacalc"]
    assert row.state == "not connected", str(bl.status())
    assert "PVs not connected" in row.reason and "gp:m1." in row.reason
    assert "notacalc" not in bl
    assert elapsed < 3 + 10
    connected = {ch.pvname for ch in planned_channels(bl._pending["notacalc"]) if ch.connected}
    assert "gp:m1.DESC" in connected and "gp:m1.CALC" not in connected


def test_validate_names_a_lazy_entry_that_is_not_a_device(tmp_path):
    from loader.validation import validate
    cfg = lazy_config(tmp_path, ["calcz"], ["calcs"])
    report = validate(config=cfg)
    messages = [p.message for p in report.of_scope("advice")]
    assert any("load.lazy names 'calcz'" in m and "did you mean 'calcs'" in m for m in messages), messages


def test_a_lazy_area_detector_part_touched_after_the_load_waits_for_its_connection(
        gp_ioc, ad_ioc, tmp_path):
    """ophyd's area-detector components are lazy.  The load builds devices with
    ophyd's wait switched off; each device used to keep that, so a part first
    touched after the load came back unconnected, its enum strings None."""
    cfg = lazy_config(tmp_path, [], ["area_detector"])
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    try:
        det = bl.adsimdet
        assert det.lazy_wait_for_connection and det.cam.lazy_wait_for_connection
        untouched = [a for a in ("shutter_mode", "frame_type", "color_mode", "data_type")
                     if a not in det.cam._signals]
        assert untouched, "the load built every candidate: pick another lazy enum of the cam"
        menu = getattr(det.cam, untouched[0])
        assert menu.connected and menu.enum_strs, "touched after the load: connected at once"
    finally:
        for obj in bl.devices.values():
            obj.destroy()
