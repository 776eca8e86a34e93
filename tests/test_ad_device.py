"""The ``adsimdet`` ophyd device against the simulated ``ad:`` IOC: files, resources, runs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import epics
import numpy as np
import pytest
from area_detector_handlers.handlers import AreaDetectorHDF5Handler

from ca_helpers import wait_for

from loader.devices.area_detector import SimDetectorV34


@pytest.fixture
def adsimdet(ad_ioc):
    """The project's SimDetectorV34, writing under the IOC's data directory."""
    template = str(Path(ad_ioc.data_dir) / "%Y" / "%m" / "%d") + "/"
    det = SimDetectorV34("ad:", name="adsimdet", write_path_template=template)
    det.wait_for_connection(timeout=15)
    det.cam.acquire_time.put(0.001, wait=True)
    det.cam.acquire_period.put(0, wait=True)
    det.cam.num_images.put(1, wait=True)
    det.image.enable.put(1, wait=True)
    yield det
    if det._staged.name != "no":
        det.unstage()


def read_datum(resource: dict, datum: dict) -> np.ndarray:
    """What databroker would return for one datum, through the AD_HDF5 handler."""
    path = Path(resource["root"]) / resource["resource_path"]
    handler = AreaDetectorHDF5Handler(str(path), **resource["resource_kwargs"])
    return np.asarray(handler(**datum["datum_kwargs"]))


def last_image(det) -> np.ndarray:
    size_x, size_y = det.image.array_size.width.get(), det.image.array_size.height.get()
    flat = epics.caget("ad:image1:ArrayData", count=size_x * size_y, use_monitor=False,
                       timeout=10)
    return np.asarray(flat, dtype=np.uint8).reshape(size_y, size_x)


def test_stage_trigger_unstage_writes_what_image1_shows(adsimdet):
    det = adsimdet
    det.cam.noise.put(20, wait=True)              # every frame differs
    det.stage()
    assert det.hdf1.capture.get() == 1
    for _ in range(2):
        det.trigger().wait(timeout=10)
        det.read()
    key = f"{det.name}_image"
    assert det.describe()[key]["shape"] == (1, 1024, 1024)
    docs = list(det.collect_asset_docs())
    shown = last_image(det)
    det.unstage()
    assert det.hdf1.capture.get() == 0
    kinds = [name for name, _ in docs]
    assert kinds == ["resource", "datum", "datum"]
    resource = docs[0][1]
    assert resource["spec"] == "AD_HDF5"
    assert resource["resource_kwargs"] == {"frame_per_point": 1}
    path = Path(resource["root"]) / resource["resource_path"]
    assert path.is_file()
    assert path.parent == Path(time.strftime(det.hdf1.write_path_template))   # dated folders
    frames = [read_datum(resource, doc) for _, doc in docs[1:]]
    assert [f.shape for f in frames] == [(1, 1024, 1024)] * 2
    np.testing.assert_array_equal(frames[-1][0], shown)
    assert not np.array_equal(frames[0], frames[1])
    det.cam.noise.put(0, wait=True)


def test_several_images_per_trigger(adsimdet):
    det = adsimdet
    assert det.cam.stage_sigs["num_images"] == 1     # one frame per trigger unless asked
    det.cam.stage_sigs["num_images"] = 3              # as a user asks for more (ophyd's way)
    det.stage()
    for _ in range(2):
        det.trigger().wait(timeout=20)
        det.read()
    docs = list(det.collect_asset_docs())
    det.unstage()
    assert det.hdf1.capture.get() == 0               # capture stopped cleanly
    assert det.hdf1.num_captured.get() == 6
    resource = docs[0][1]
    assert resource["resource_kwargs"] == {"frame_per_point": 3}
    data = [read_datum(resource, doc) for name, doc in docs if name == "datum"]
    assert [d.shape for d in data] == [(3, 1024, 1024)] * 2


def test_bluesky_count_run_is_readable(adsimdet):
    from bluesky import RunEngine
    from bluesky.plans import count

    det = adsimdet
    documents = []
    engine = RunEngine({})
    engine(count([det], num=10), lambda name, doc: documents.append((name, doc)))
    resources = [doc for name, doc in documents if name == "resource"]
    datums = [doc for name, doc in documents if name == "datum"]
    events = [doc for name, doc in documents if name == "event"]
    assert len(resources) == 1 and len(datums) == 10 and len(events) == 10
    stop = [doc for name, doc in documents if name == "stop"][0]
    assert stop["exit_status"] == "success"
    frames = [read_datum(resources[0], d) for d in datums]
    assert all(f.shape == (1, 1024, 1024) and f.dtype == np.uint8 for f in frames)
    assert det.hdf1.capture.get() == 0


def test_swait_records_drive_the_spot_across_iocs(gp_ioc, adsimdet):
    """gp:userCalc9 reads ad:cam1:PeakStartX_RBV and writes ad:cam1:PeakStartX."""
    from apstools.synApps import SwaitRecord

    det = adsimdet
    calc = SwaitRecord("gp:userCalc9", name="calc9")
    calc.wait_for_connection(timeout=15)
    calc.reset()
    det.cam.peak_start.peak_start_x.put(500, wait=True)
    det.cam.gain.put(200, wait=True)
    det.cam.noise.put(0, wait=True)
    calc.channels.A.input_pv.put("ad:cam1:PeakStartX_RBV", wait=True)
    calc.channels.B.input_value.put(620, wait=True)
    calc.calculation.put("B", wait=True)
    calc.output_link_pv.put("ad:cam1:PeakStartX", wait=True)
    calc.scanning_rate.put(".1 second", wait=True)
    try:
        wait_for(lambda: det.cam.peak_start.peak_start_x.get(use_monitor=False) == 620, 10,
                 message="PeakStartX written by gp:userCalc9")
        wait_for(lambda: calc.channels.A.input_value.get(use_monitor=False) == 620, 10,
                 message="userCalc9.A reading PeakStartX_RBV")
    finally:   # as the IOC's other users expect it: A no longer follows PeakStartX_RBV
        calc.scanning_rate.put("Passive", wait=True)
        calc.output_link_pv.put("", wait=True)
        calc.channels.A.input_pv.put("", wait=True)
    det.cam.image_mode.put("Single", wait=True)
    det.cam.acquire.put(1, wait=True, timeout=10)
    image = last_image(det).astype(float)
    bright = image > image.max() / 2
    assert np.mean(np.nonzero(bright)[1]) == pytest.approx(620, abs=3)


def test_trigger_rate_is_reported(adsimdet, capsys):
    """Not a speed assertion (see bench/): prints frames/s of trigger+read into HDF5."""
    det = adsimdet
    det.stage()
    started = time.perf_counter()
    for _ in range(20):
        det.trigger().wait(timeout=10)
        det.read()
    rate = 20 / (time.perf_counter() - started)
    det.unstage()
    with capsys.disabled():
        print(f"\nadsimdet: {rate:.1f} frames/s (1024x1024 UInt8 into HDF5)")
    assert rate > 0


PLUGIN_TYPES = """
import json, os, sys
import ophyd
from loader import bulk_metadata
from loader.devices.area_detector import ImagePlugin, SimDetectorV34
sys.path.insert(0, sys.argv[2])
from ca_helpers import record_blocking_gets, wait_for
bulk_metadata.install()                 # the PV class of a load
gets = record_blocking_gets()
if sys.argv[1] == "right":
    det = SimDetectorV34("ad:", name="typed")
    det.wait_for_connection(timeout=15)
    det.image.wait_for_connection(timeout=15)      # lazy: built when first touched
    wait_for(lambda: det.hdf1._misconfigured is False and det.image._misconfigured is False,
             timeout=10, message="HDF1 and image1 confirmed as what their classes expect")
else:
    wrong = ImagePlugin("ad:HDF1:", name="wrong")
    wait_for(lambda: wrong._misconfigured is True, timeout=10,
             message="an image plugin class on the HDF5 plugin's prefix noticed")
print(json.dumps({"blocking": [pv for thread, pv in gets if thread == "monitor"]}))
os._exit(0)
"""


def test_plugin_types_are_checked_without_a_blocking_read(ad_ioc):
    """ophyd checks that a plugin is of its class's type when ``PluginType_RBV``
    connects, from ophyd's monitor thread.  The read it makes there must not be a
    blocking Channel Access get (at every load and every IOC reconnection), and the
    check must still happen: a plugin pointed at the wrong prefix is noticed.  Each
    in a fresh process, as at a load: a PV another object holds connects at once,
    and ophyd's connection-time callbacks then race with its subscriptions (ophyd's
    ``stage()`` runs the check itself if its callback was missed); and a monitor
    made right after the same PV's last one was destroyed can miss its first
    update (the eleventh session's note)."""
    from test_deferred_imports import run_fresh
    tests = str(Path(__file__).parent)
    for plugin in ("right", "wrong"):       # each check waits for ophyd's verdict (or fails)
        assert run_fresh(PLUGIN_TYPES, plugin, tests)["blocking"] == [], plugin


def test_the_constructor_leaves_the_first_frames_signals_to_the_load(ad_ioc, monkeypatch):
    """``MADE_WITH_DEVICE`` is made by the constructor and connected by the load, in
    bulk: touching a lazy component makes ophyd wait for its connection, and one
    after the other those waits made the constructor take ~1.4 s instead of ~0.1 s
    (the slowest constructor of a training load)."""
    from ophyd.signal import EpicsSignalBase
    waited = []
    wait_for_connection = EpicsSignalBase.wait_for_connection

    def recorded(self, *args, **kwargs):
        waited.append(self.dotted_name)
        return wait_for_connection(self, *args, **kwargs)

    monkeypatch.setattr(EpicsSignalBase, "wait_for_connection", recorded)
    det = SimDetectorV34("ad:", name="built")
    try:
        # the stock constructors' own waits stay (ophyd's trigger mixin touches
        # cam.acquire, apstools' acquire_busy, ophyd's plugins plugin_type)
        assert set(waited).isdisjoint(set(SimDetectorV34.MADE_WITH_DEVICE) - {"cam.acquire"})
        made = [walk.item for walk in det.walk_signals(include_lazy=False)]
        assert det.cam.array_counter in made and det.hdf1.file_path_exists in made
    finally:
        det.destroy()


def test_a_trigger_stored_while_the_last_one_finishes_is_not_lost(adsimdet):
    """Acquire's 1 -> 0 edge finishes the trigger's status on ophyd's monitor thread;
    the scan then stores its next trigger's status, possibly before that thread has
    gone on.  The interleaving is forced here: the next status is stored from inside
    ``set_finished`` (where the scan's thread can run).  ophyd's own handler cleared
    ``_status`` after finishing, erasing the new one: that frame never finished and
    the scan hung (2 of 7 runs of 100 frames)."""
    from ophyd.status import DeviceStatus
    after = DeviceStatus(adsimdet)

    class ScanGoesOnInBetween(DeviceStatus):
        def set_finished(self):
            super().set_finished()
            adsimdet._status = after            # the next trigger(), from the scan's thread

    adsimdet._status = ScanGoesOnInBetween(adsimdet)
    adsimdet._acquire_changed(old_value=1, value=0)
    adsimdet._acquire_changed(old_value=1, value=0)     # the next frame's edge
    after.wait(timeout=5)
    assert after.success


def test_a_frame_that_ends_before_trigger_returns_still_gives_its_status(adsimdet, monkeypatch):
    """The IOC sends Acquire's 1 -> 0 at once, so a short exposure can end, and its
    monitor callback clear ``_status``, before ``trigger`` returns.  Forced here: the
    datum step between the put and the return waits for that callback.  ophyd's own
    ``SingleTrigger.trigger`` returns ``self._status`` then, i.e. None."""
    det = adsimdet
    exposure = det.cam.acquire_time.get()
    generate_datum = det.generate_datum

    def datum_after_the_frame_ended(*args, **kwargs):
        generate_datum(*args, **kwargs)
        deadline = time.monotonic() + 10
        while det._status is not None and time.monotonic() < deadline:
            time.sleep(0.001)

    det.cam.acquire_time.put(0.001, wait=True)
    monkeypatch.setattr(det, "generate_datum", datum_after_the_frame_ended)
    det.stage()
    try:
        status = det.trigger()
        assert det._status is None, "the frame did not end before trigger returned"
        assert status is not None
        status.wait(timeout=10)
        assert status.success
    finally:
        det.unstage()
        det.cam.acquire_time.put(exposure, wait=True)


def test_a_frame_that_never_ends_fails_its_trigger_in_bounded_time(adsimdet, monkeypatch):
    """A trigger whose acquisition the IOC never ends (here: switched to Continuous
    after staging) fails with a timeout after its exposures plus the margin,
    instead of holding the scan for ever."""
    from ophyd.utils.errors import StatusTimeoutError
    monkeypatch.setattr(SimDetectorV34, "TRIGGER_MARGIN", 1.0)
    adsimdet.stage()
    adsimdet.cam.image_mode.put("Continuous", wait=True)
    t0 = time.monotonic()
    status = adsimdet.trigger()
    try:
        with pytest.raises(StatusTimeoutError):
            status.wait(timeout=20)
        assert time.monotonic() - t0 < 10
    finally:
        adsimdet.cam.acquire.put(0, wait=True)
    assert adsimdet.frame_timeout() == pytest.approx(1.0 + max(adsimdet.cam.acquire_time.get(),
                                                               adsimdet.cam.acquire_period.get()))


FIRST_STAGE = """
import json, os
from epics import ca
from loader import load_beamline
bl = load_beamline("training", labels=["area_detector"], strict=True)
made = []
create_channel = ca.create_channel
ca.create_channel = lambda name, *a, **k: made.append(name) or create_channel(name, *a, **k)
det = bl["adsimdet"]
det.stage()
det.trigger().wait(10)
det.unstage()
print(json.dumps({"made_at_stage": made}))
os._exit(0)
"""


def test_the_first_frame_after_a_load_opens_no_channel(gp_ioc, ad_ioc, tmp_path):
    """Everything staging and a trigger read or set is connected by the load, with
    the rest of the beamline: the first scan of a session no longer connects ~40
    lazy PVs one busy-polled connection at a time before its first frame (0.5-1 s).
    In a fresh process, as a session's first scan: no other object holds them yet."""
    from test_deferred_imports import run_fresh
    try:
        out = run_fresh(FIRST_STAGE, env=dict(os.environ, BEAMLINE_DATA_DIR=str(tmp_path / "data")))
    finally:
        # the load's ad_peak_simulation set gp:userCalc9/10 dithering the spot; they
        # run in the gp: IOC after the process: stopped, as the IOC's other users expect
        for record in ("gp:userCalc9", "gp:userCalc10"):
            assert epics.caput(f"{record}.SCAN", "Passive", wait=True, timeout=10) == 1
            assert epics.caput(f"{record}.OUTN", "", wait=True, timeout=10) == 1
    assert out["made_at_stage"] == [], "add these to SimDetectorV34.MADE_WITH_DEVICE"


def test_unwritable_path_makes_staging_fail_with_the_ioc_message(ad_ioc):
    det = SimDetectorV34("ad:", name="baddet", write_path_template="/proc/no_such_dir/%Y/")
    det.wait_for_connection(timeout=15)
    det.cam.acquire_time.put(0.001, wait=True)
    with pytest.raises(OSError, match="no_such_dir"):
        det.stage()
    assert det._staged.name == "no"                  # ophyd unstaged what it had set
    assert det.hdf1.file_path_exists.get() == 0
    assert det.hdf1.write_status.get() == 1
    assert det.cam.acquire_busy.get() == 0           # the IOC is alive and idle


def test_apstools_epics_file_name_plugin_works_unchanged(ad_ioc):
    """apstools' AD_EpicsFileNameHDF5Plugin: names come from the EPICS PVs."""
    from apstools.devices import AD_EpicsFileNameHDF5Plugin, SimDetectorCam_V34
    from apstools.devices import SingleTrigger_V34
    from ophyd import ADComponent, SimDetector

    folder = str(Path(ad_ioc.data_dir) / "epics_names") + "/"

    class Detector(SingleTrigger_V34, SimDetector):
        cam = ADComponent(SimDetectorCam_V34, "cam1:")
        hdf1 = ADComponent(AD_EpicsFileNameHDF5Plugin, "HDF1:",
                           write_path_template=folder, read_path_template=folder)

    det = Detector("ad:", name="epicsnames")
    det.wait_for_connection(timeout=15)
    det.cam.acquire_time.put(0.001, wait=True)
    det.cam.num_images.put(1, wait=True)
    hdf = det.hdf1
    Path(folder).mkdir(exist_ok=True)
    for signal, value in ((hdf.file_path, folder), (hdf.file_name, "scan"),
                          (hdf.file_template, "%s%s_%4.4d.h5"), (hdf.file_number, 12),
                          (hdf.auto_increment, "Yes"), (hdf.num_capture, 2),
                          (hdf.auto_save, "Yes"), (hdf.create_directory, -1)):
        signal.set(value).wait(10)
    hdf.stage_sigs["file_write_mode"] = "Stream"
    hdf.stage_sigs["capture"] = 1
    det.stage()
    for _ in range(2):
        det.trigger().wait(timeout=10)
        det.read()
    docs = list(det.collect_asset_docs())
    wait_for(lambda: hdf.capture.get() == 0, 10, message="capture to stop after NumCapture")
    det.unstage()
    resource = docs[0][1]
    assert resource["resource_path"].endswith("scan_0012.h5")
    frames = read_datum(resource, {"datum_kwargs": {"point_number": 0}})
    assert frames.shape == (2, 1024, 1024)


def test_stock_ophyd_single_trigger_detector(ad_ioc):
    """ophyd's own SingleTrigger + SimDetector + HDF5Plugin, watching Acquire_RBV."""
    from apstools.devices import AD_plugin_primed
    from ophyd import ADComponent, SimDetector, SingleTrigger
    from ophyd.areadetector import SimDetectorCam
    from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
    from ophyd.areadetector.plugins import HDF5Plugin

    from loader.devices.area_detector import prime_plugin

    folder = str(Path(ad_ioc.data_dir) / "stock") + "/"
    Path(folder).mkdir(exist_ok=True)     # this older plugin class has no CreateDirectory

    class StockHDF5(FileStoreHDF5IterativeWrite, HDF5Plugin):
        pass

    class Detector(SingleTrigger, SimDetector):
        cam = ADComponent(SimDetectorCam, "cam1:")
        hdf1 = ADComponent(StockHDF5, "HDF1:", write_path_template=folder)

    det = Detector("ad:", name="stock")
    det.wait_for_connection(timeout=15)
    # stock SingleTrigger.trigger returns self._status after its put, and the monitor
    # callback of a finished acquisition clears it: an exposure shorter than that
    # (1 ms, with the IOC's monitor updates sent at once) made trigger() return None.
    # Our SimDetectorV34.trigger returns the status it made
    # (test_a_frame_that_ends_before_trigger_returns_still_gives_its_status).
    det.cam.acquire_time.put(0.2, wait=True)
    det.cam.num_images.put(1, wait=True)
    if not AD_plugin_primed(det.hdf1):
        prime_plugin(det.hdf1)
    det.stage()
    for _ in range(3):
        det.trigger().wait(timeout=10)
        det.read()
    docs = list(det.collect_asset_docs())
    det.unstage()
    resource = docs[0][1]
    data = read_datum(resource, docs[-1][1])
    assert data.shape == (1, 1024, 1024)
    assert len([name for name, _ in docs if name == "datum"]) == 3
