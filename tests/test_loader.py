"""load_beamline against the simulated IOCs: everything connected and set up,
reload picks up JSON edits, failures are listed (or raised with strict=True)."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import epics
import pytest
import yaml

from ca_helpers import blocking_gets_by_thread, monitor_thread_held, wait_for
from loader import load_beamline
from loader.beamline import READY, BeamlineLoadError
from loader.cli import main
from test_one_cpu import needs_two_cpus

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = {1: "timebase", 2: "I0", 3: "scint", 4: "diode", 5: "I00", 11: "roi1", 12: "roi2"}


def copy_config(tmp_path: Path, labels=None) -> tuple[Path, Path]:
    """training.yml + happi_db.json in tmp_path; optionally loading only ``labels``."""
    db = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", db)
    config = yaml.safe_load((ROOT / "instrument_config" / "training.yml").read_text())
    config["happi"] = "happi_db.json"
    if labels:
        config["load"] = {"labels": list(labels)}
    cfg = tmp_path / "training.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg, db


def motor_item(name: str, prefix: str, **extra):
    from loader.containers import BeamlineItem
    fields = dict(name=name, beamline="training", prefix=prefix, labels=["motor", "positioner"],
                  device_class="loader.devices.motor.EpicsMotorWithSREV")
    return BeamlineItem(**{**fields, **extra})


@pytest.fixture(scope="module")
def training(gp_ioc_process, ad_ioc_process, tmp_path_factory):
    """The whole training beamline, loaded once for this module (no session)."""
    data = tmp_path_factory.mktemp("beamline_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEAMLINE_DATA_DIR", str(data))
        bl = load_beamline("training", session=False, timeout=30)   # generous: CI machines are busy
        yield bl
    for obj in bl.devices.values():
        getattr(obj, "destroy", lambda: None)()


def test_every_device_connected_and_set_up(training):
    table = training.status()
    assert [r.name for r in table.failed] == [], str(table)
    assert len(table) == 24 and all(r.state == READY for r in table)
    assert "24 of 24 devices ready" in str(table)
    assert {"validate", "import", "instantiate", "connect", "setup", "total"} <= set(training.timings)
    print(table)


def test_the_load_puts_its_pyepics_and_ophyd_hooks_in_place(training):
    from loader import bulk_metadata, pyepics_copy, pyepics_gil
    assert bulk_metadata.installed() and pyepics_gil.installed() and pyepics_copy.installed()


def test_access_by_attribute_key_label_and_iteration(training):
    assert training.m1 is training["m1"]
    assert training.labels["motor"] == [training[f"m{i}"] for i in range(1, 17)]
    assert training.noisy in training.labels["detectors"]
    assert {"I0", "diode", "timebase"} <= {s.name for s in training.labels["counter"]}
    names = list(training)
    assert names.index("m2") < names.index("m10") and "I0" in names
    with pytest.raises(AttributeError, match="has no device 'm99'"):
        training.m99


def test_scaler_channel_names_on_the_ioc(training):
    for number, name in CHANNELS.items():
        assert epics.caget(f"gp:scaler1.NM{number}", timeout=5) == name
    scaler = training.scaler1
    selected = {attr.split(".")[0] for attr in scaler.channels.read_attrs}
    assert selected == {f"chan{n:02d}" for n in CHANNELS}
    for name in CHANNELS.values():
        assert training[name].name == name
        assert {"counter", "channel"} <= training[name]._ophyd_labels_
    assert training.I0 is scaler.channels.chan02.s


def test_scaler_names_already_on_the_ioc_are_kept(training):
    """Names set by staff on the IOC win unless the YAML says overwrite: true."""
    from loader.setups.scaler import scaler_channels
    scaler = training.scaler1
    scaler.channels.chan06.chname.set("staff").wait(5)
    try:
        exported = scaler_channels(scaler, {6: "mine"})
        assert scaler.channels.chan06.chname.get() == "staff" and "staff" in exported
        exported = scaler_channels(scaler, {6: "mine"}, overwrite=True)
        assert epics.caget("gp:scaler1.NM6", timeout=5) == "mine" and "mine" in exported
    finally:
        scaler.channels.chan06.chname.set("").wait(5)
        scaler.select_channels()


def test_scaler_channel_renamed_at_the_ioc_follows(training):
    """A name typed into the IOC's NMn field (a panel, caput) renames the channel's
    data key at once, without a reload: the channel monitors its name."""
    from ca_helpers import wait_for
    channel = training.scaler1.channels.chan07
    try:
        epics.caput("gp:scaler1.NM7", "xtal", wait=True, timeout=5)
        wait_for(lambda: channel.s.name == "xtal", timeout=5, message="chan07 renamed")
        assert "xtal" in channel.s.read()
    finally:
        epics.caput("gp:scaler1.NM7", "", wait=True, timeout=5)
        wait_for(lambda: channel.s.name == "", timeout=5, message="chan07 name cleared")


def test_m1_has_srev_2000(training):
    assert epics.caget("gp:m1.SREV", timeout=5) == 2000
    assert training.m1.steps_per_revolution.get(use_monitor=False) == 2000


def test_noisy_follows_m1(training):
    assert epics.caget("gp:userCalc1.INAN", timeout=5) == "gp:m1.RBV"
    assert "RNDM" in epics.caget("gp:userCalc1.CALC", timeout=5)
    m1, noisy = training.m1, training.noisy
    before = noisy.get(use_monitor=False)
    target = m1.position + 0.05
    m1.move(target, wait=True, timeout=30)
    wait_for(lambda: noisy.get(use_monitor=False) != before, timeout=10, message="noisy to update")
    assert abs(m1.position - target) < 0.002


def test_temperature_settles_towards_setpoint(training):
    assert epics.caget("gp:userCalc8.B", timeout=5) == 25
    assert epics.caget("gp:userCalc8.SCAN", as_string=True, timeout=5) == "2 second"
    temperature = training.temperature
    start = abs(temperature.readback.get(use_monitor=False) - 25)

    def closer_or_there():
        distance = abs(temperature.readback.get(use_monitor=False) - 25)
        return distance <= 1.5 or distance < start - 0.5
    wait_for(closer_or_there, timeout=10, message="temperature moving towards 25")


def test_findpv_as_in_the_notebook(training):
    assert training.findpv("gp:userCalc8.CALC") == {
        "read": ["calcs.calc8.calculation", "temperature.calculation"],
        "write": ["calcs.calc8.calculation", "temperature.calculation"]}
    assert "noisy" in training.findpv("gp:userCalc1.VAL")["read"]


def test_area_detector_paths_under_the_data_dir(training, tmp_path_factory):
    hdf1 = training.adsimdet.hdf1
    assert hdf1.write_path_template.rstrip("/") == hdf1.read_path_template.rstrip("/")
    assert hdf1.write_path_template.rstrip("/").endswith("/adsimdet/%Y/%m/%d")
    assert Path(hdf1.write_path_template.split("%Y")[0]).is_dir()


def test_area_detector_spot_is_random_visible_and_dithered(training):
    """As in the training instrument: a spot centred in 100..900, bright enough to
    see, whose centre gp:userCalc9/10 move by a few pixels."""
    import numpy as np
    cam = training.adsimdet.cam
    x0, y0 = cam.peak_start.peak_start_x.get(use_monitor=False), cam.peak_start.peak_start_y.get(use_monitor=False)
    assert 95 <= x0 <= 905 and 95 <= y0 <= 905
    assert 100 <= cam.gain.get() <= 250
    assert epics.caget("gp:userCalc9.OUTN") == "ad:cam1:PeakStartX"
    assert epics.caget("gp:userCalc10.OUTN") == "ad:cam1:PeakStartY"
    wait_for(lambda: cam.peak_start.peak_start_x.get(use_monitor=False) != x0
             or cam.peak_start.peak_start_y.get(use_monitor=False) != y0, timeout=10, message="dither")
    for pv, value in (("ImageMode", "Single"), ("NumImages", 1), ("MinX", 0), ("MinY", 0),
                      ("BinX", 1), ("BinY", 1), ("SizeX", 1024), ("SizeY", 1024)):
        epics.caput(f"ad:cam1:{pv}", value, wait=True)    # whatever earlier tests left
    counter = epics.caget("ad:image1:ArrayCounter_RBV", use_monitor=False)
    cam.acquire.put(1, wait=True, timeout=10)
    wait_for(lambda: epics.caget("ad:image1:ArrayCounter_RBV", use_monitor=False) > counter,
             timeout=5, message="image1 to receive the frame")
    frame = np.asarray(epics.caget("ad:image1:ArrayData", timeout=10)).reshape(1024, 1024)
    y, x = np.unravel_index(np.argmax(frame), frame.shape)
    assert frame.max() > 50, "the spot is too faint to see"
    assert abs(x - cam.peak_start.peak_start_x.get()) < 10 and abs(y - cam.peak_start.peak_start_y.get()) < 10


def test_the_spot_dither_drops_input_links_left_on_its_record(training):
    """A link left in the dither record's A or B input (INAN, INBN: a user's test,
    an earlier session) overwrote the centre and the width the setup writes at its
    next update, and the spot wandered off.  The setup clears both."""
    from loader.setups.area_detector import ad_peak_simulation
    other = float(epics.caget("gp:userCalc10.VAL", use_monitor=False))    # dithers Y, every second
    centre = 300 if abs(other - 300) > 50 else 700
    try:
        for field in ("INAN", "INBN"):
            assert epics.caput(f"gp:userCalc9.{field}", "gp:userCalc10.VAL", wait=True, timeout=10) == 1
        ad_peak_simulation(training.adsimdet, center=centre, width=20, gain=150, noise=0,
                           dither_x="gp:userCalc9", dither_pixels=2)
        for _ in range(2):      # two updates of the record the links named: they would have followed
            before = epics.caget("gp:userCalc10.VAL", use_monitor=False)
            wait_for(lambda: epics.caget("gp:userCalc10.VAL", use_monitor=False) != before,
                     timeout=10, message="gp:userCalc10 to update again")
        assert epics.caget("gp:userCalc9.A", use_monitor=False) == centre
        assert epics.caget("gp:userCalc9.B", use_monitor=False) == 2
        x = training.adsimdet.cam.peak_start.peak_start_x.get(use_monitor=False)
        assert abs(x - centre) <= 1, "the spot is not dithered around its centre"
        assert epics.caget("gp:userCalc9.INAN", use_monitor=False) == ""
        assert epics.caget("gp:userCalc9.INBN", use_monitor=False) == ""
    finally:
        for field in ("INAN", "INBN"):
            epics.caput(f"gp:userCalc9.{field}", "", wait=True, timeout=10)


def test_session_and_namespace(gp_ioc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BEAMLINE_DATA_DIR", str(tmp_path / "data"))
    cfg, _ = copy_config(tmp_path, labels=["motor"])
    namespace: dict = {}
    bl = load_beamline("training", config=cfg, namespace=namespace)
    assert bl.session_error is None, bl.status()
    assert namespace["m1"] is bl.m1 and namespace["RE"] is bl.RE and namespace["cat"] is bl.cat
    assert "scaler1" not in namespace and len(bl.devices) == 16


@pytest.mark.parametrize("lazy", [False, True], ids=["built", "lazy"])
def test_positions_are_known_when_the_load_returns_even_with_monitor_updates_late(gp_ioc, tmp_path, lazy):
    """ophyd forgets in subclasses that an ``EpicsMotor`` (or the temperature, a
    ``PVPositioner``) is connected only after its first position update: a load under
    a busy monitor thread returned motors whose position was None, and ``%wa`` failed
    on them.  Here ophyd's monitor thread is held for 3 s during the load.  The class
    of a device in ``load: lazy`` is a subclass too."""
    import threading
    cfg, _ = copy_config(tmp_path, labels=["positioner"])
    if lazy:
        config = yaml.safe_load(cfg.read_text())
        config["load"]["lazy"] = [f"m{i}" for i in range(1, 17)] + ["temperature"]
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    released = []
    with monitor_thread_held() as gate:
        timer = threading.Timer(3.0, lambda: (released.append(time.monotonic()), gate.set()))
        timer.start()
        try:
            bl = load_beamline("training", config=cfg, session=False, timeout=20)
            returned = time.monotonic()
        finally:
            timer.cancel()
    assert released and returned >= released[0], "the load returned before the first updates"
    assert len(bl.devices) == 17 and all(row.ok for row in bl.status())
    assert {name: dev.position for name, dev in bl.devices.items() if dev.position is None} == {}
    if lazy:
        from loader.lazy_signals import is_lazy
        assert all(is_lazy(dev) for dev in bl.devices.values())
    for dev in bl.devices.values():
        dev.destroy()


def test_a_first_update_that_came_before_the_device_subscribed_is_not_lost(
        gp_ioc, tmp_path, monkeypatch):
    """ophyd subscribes a motor's ``_pos_changed`` to its readback just after creating
    the signal, and replays the signal's last value only if it is already connected.
    Here the building thread is held between the two until the readback's first value
    has gone through ophyd's monitor thread, and the signal counts as not yet
    connected (as on a busy machine, or a PV another object already monitors):
    without the replay, m3 waited the whole timeout, "waiting for the first monitor
    updates", with ophyd's monitor queue empty (seen twice in full test runs)."""
    from ophyd.ophydobj import OphydObject
    real_subscribe = OphydObject.subscribe
    held = []

    def subscribe_late(self, callback, event_type=None, run=True):
        if getattr(callback, "__name__", "") == "_pos_changed" and getattr(self, "pvname", "") == "gp:m3.RBV":
            wait_for(lambda: self._args_cache.get("value") is not None, timeout=10,
                     message="m3's readback value through ophyd's monitor thread")
            held.append(self)
            run = False                     # as for a signal whose metadata has not come yet
        return real_subscribe(self, callback, event_type=event_type, run=run)

    monkeypatch.setattr(OphydObject, "subscribe", subscribe_late)
    cfg, _ = copy_config(tmp_path, labels=["motor"])
    bl = load_beamline("training", config=cfg, session=False, timeout=5)
    monkeypatch.undo()
    try:
        assert len(held) == 1, "the late subscription was not made"
        assert {row.name: row.reason for row in bl.status() if not row.ok} == {}
        assert bl.m3.position is not None
    finally:
        for dev in bl.devices.values():
            dev.destroy()


def test_a_device_held_up_by_the_monitor_thread_says_so(gp_ioc, tmp_path):
    """A motor whose PVs all connected but whose first updates wait in ophyd's monitor
    queue is not connected at the timeout; its reason says the backlog is in this
    process (a busy session), not at the IOC."""
    cfg, _ = copy_config(tmp_path, labels=["motor"])
    with monitor_thread_held():
        bl = load_beamline("training", config=cfg, session=False, timeout=2)
        rows = [row for row in bl.status() if not row.ok]
    assert rows, "every motor connected while ophyd's monitor thread was held"
    assert all("waiting for the first monitor updates (ophyd's monitor thread is" in row.reason
               and "callbacks behind" in row.reason for row in rows), [row.reason for row in rows]
    bl.reload()             # the backlog gone, the same objects are ready
    assert len(bl.devices) == 16 and all(row.ok for row in bl.status())
    for dev in bl.devices.values():
        dev.destroy()


def test_a_plain_ophyd_motor_loaded_makes_no_blocking_get_on_the_monitor_thread(
        gp_ioc, tmp_path, monkeypatch):
    """A happi entry may name ``ophyd.EpicsMotor`` itself: loaded, its limit changes
    are fetched aside too, not by ophyd's blocking get on the one thread that delivers
    every monitor update of the session (the class of the device is unchanged)."""
    import json

    from ophyd import EpicsMotor
    cfg, db = copy_config(tmp_path, labels=["motor"])
    entries = json.loads(db.read_text())
    entries["m9"]["device_class"] = "ophyd.EpicsMotor"
    db.write_text(json.dumps(entries, indent=2))
    bl = load_beamline("training", config=cfg, session=False, timeout=20)
    m9 = bl["m9"]
    assert type(m9) is EpicsMotor and all(row.ok for row in bl.status())
    blocking = blocking_gets_by_thread(monkeypatch)
    try:        # another client's change: m9 hears of it by its monitor only
        epics.caput("gp:m9.HLM", 11.5, wait=True)
        wait_for(lambda: m9.limits == (-100.0, 11.5), timeout=5, message="limits from VAL's DRVH")
    finally:
        epics.caput("gp:m9.HLM", 100.0, wait=True)
        wait_for(lambda: m9.limits == (-100.0, 100.0), timeout=5, message="limits back")
        for dev in bl.devices.values():
            dev.destroy()
    assert [pv for thread, pv in blocking if thread == "monitor" and pv.startswith("gp:m9.")] == []


WHOLE_LOAD = """
import json, os, sys, time
from loader import load_beamline
sys.path.insert(0, sys.argv[2])
from ca_helpers import record_blocking_gets
gets = record_blocking_gets()
bl = load_beamline("training", session=False, timeout=30)
time.sleep(float(sys.argv[1]))
print(json.dumps({"failed": [r.name for r in bl.status().failed],
                  "blocking": [g for g in gets if g[0] in ("monitor", "metadata", "get_put")]}))
os._exit(0)
"""


def test_a_whole_load_makes_no_blocking_get_on_ophyds_callback_threads(gp_ioc, ad_ioc, tmp_path):
    """ophyd delivers every monitor update of the session on one thread, and every
    connection's metadata on another: a blocking Channel Access read there holds
    up all of them for a round trip, or a timeout while an IOC is slow or going
    away.  Device classes do this from callbacks that ``get()`` a signal whose
    value no monitor has brought (ophyd's motor limits and plugin type check,
    apstools' IOC statistics, each fixed on its own).  A fresh process (PVs not yet
    in pyepics' cache, as at a beamline's start) loads every device of the training
    beamline and lives on for a few seconds of monitor updates: none may block
    those threads."""
    from test_deferred_imports import run_fresh
    out = run_fresh(WHOLE_LOAD, "3", str(Path(__file__).parent),
                    env={**os.environ, "BEAMLINE_DATA_DIR": str(tmp_path)})
    assert out["failed"] == []
    assert out["blocking"] == []


@needs_two_cpus
@pytest.mark.parametrize("one_cpu", [True, False])
def test_a_load_shares_one_cpu_while_it_lasts_and_then_gives_every_thread_its_cpus_back(
        gp_ioc, tmp_path, one_cpu):
    """loader/one_cpu.py: while a load builds and connects, the threads of the process
    share one CPU (its work is on one GIL; BENCHMARKS.md); after it no thread is left
    there, neither the caller's nor those the load started; ``load: {one_cpu: false}``
    leaves every thread where it was.  A thread older than the load watches its own CPUs."""
    import threading

    from loader.one_cpu import cpus_of_every_thread
    own = os.sched_getaffinity(0)
    cfg, _ = copy_config(tmp_path, labels=["motor"])
    config = yaml.safe_load(cfg.read_text())
    config["load"]["one_cpu"] = one_cpu
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    seen, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(len(os.sched_getaffinity(0)))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        bl = load_beamline("training", config=cfg, session=False, timeout=30)
        left_behind = {tid: cpus for tid, cpus in cpus_of_every_thread().items() if cpus != own}
    finally:
        stop.set()
        watcher.join(5)
    try:
        assert len(bl.devices) == 16 and all(row.ok for row in bl.status())
        assert (1 in seen) is one_cpu, f"CPUs the watcher was allowed during the load: {sorted(set(seen))}"
        assert left_behind == {}, "threads left on fewer CPUs after the load (kernel id: CPUs)"
    finally:
        for dev in bl.devices.values():
            dev.destroy()


def test_reload_adds_and_removes_entries(gp_ioc, tmp_path):
    import happi
    cfg, db = copy_config(tmp_path, labels=["motor"])
    namespace: dict = {}
    bl = load_beamline("training", config=cfg, session=False, namespace=namespace)
    assert len(bl.devices) == 16 and "m5b" not in bl

    client = happi.Client(path=str(db))
    client.add_item(motor_item("m5b", "gp:m5", documentation="a second name for m5"))
    changes = bl.reload()
    assert changes["added"] == ["m5b"]
    assert bl.m5b.connected and bl.status()[-1] is not None
    assert namespace["m5b"] is bl.m5b
    assert bl.m5b.user_readback.get() == pytest.approx(bl.m5.user_readback.get())

    item = client.find_item(name="m4")
    item.documentation = "edited"
    item.save()
    old_m4 = bl.m4
    changes = bl.reload()
    assert changes == {"added": [], "removed": [], "changed": ["m4"]}
    assert bl.m4 is not old_m4 and bl.m4.md.documentation == "edited" and namespace["m4"] is bl.m4

    client.remove_item(client.find_item(name="m3"))
    changes = bl.reload()
    assert changes["removed"] == ["m3"]
    assert "m3" not in bl and "m3" not in namespace and not hasattr(bl, "m3")
    assert len(bl.devices) == 16


def test_failures_listed_and_strict_raises(gp_ioc, tmp_path):
    import happi
    cfg, db = copy_config(tmp_path, labels=["motor", "dead"])
    client = happi.Client(path=str(db))
    client.add_item(motor_item("ghost", "gp:nosuchmotor"))                   # nothing serves it
    client.add_item(motor_item("broken", "gp:m7", kwargs={"name": "{{name}}", "bogus": 1}))
    client.add_item(motor_item("outsider", "gp:m8", device_class="os.getcwd"))  # not allowed
    # an area detector whose IOC is down: its constructor itself reads PVs
    client.add_item(motor_item("deadcam", "noad:", labels=["dead"],
                               device_class="loader.devices.area_detector.SimDetectorV34"))
    t0 = time.monotonic()
    bl = load_beamline("training", config=cfg, session=False, timeout=4)
    elapsed = time.monotonic() - t0
    rows = {r.name: r for r in bl.status()}
    assert rows["ghost"].state == "not connected" and "gp:nosuchmotor" in rows["ghost"].reason
    assert rows["deadcam"].state == "not connected" and "noad:" in rows["deadcam"].reason
    assert rows["broken"].state == "construction failed" and "bogus" in rows["broken"].reason
    assert rows["outsider"].state == "invalid entry" and "allowed_modules" in rows["outsider"].reason
    assert {name: row.reason for name, row in rows.items()
            if name in {f"m{i}" for i in range(1, 17)} and row.state != READY} == {}
    assert not {"ghost", "broken", "outsider", "deadcam"} & set(bl)
    assert elapsed < 4 + 10, f"one bounded wait, not one per device ({elapsed:.1f} s)"
    with pytest.raises(BeamlineLoadError, match="ghost"):
        load_beamline("training", config=cfg, session=False, timeout=1, strict=True)


def test_check_command(gp_ioc, tmp_path, capsys):
    import happi
    cfg, db = copy_config(tmp_path, labels=["motor"])
    assert main(["check", "training", "--config", str(cfg)]) == 0
    assert "16 of 16 devices ready" in capsys.readouterr().out
    assert main(["findpv", "gp:m1.VAL", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "read: m1.user_setpoint" in out and "write: m1.user_setpoint" in out
    happi.Client(path=str(db)).add_item(motor_item("ghost", "gp:nosuchmotor"))
    assert main(["check", "training", "--config", str(cfg), "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert "16 of 17 devices ready" in out and "ghost" in out and "not connected" in out
