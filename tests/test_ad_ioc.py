"""The simulated ``ad:`` IOC over real Channel Access: PVs, acquisition, spot, files, errors."""
from __future__ import annotations

import os
import time
from pathlib import Path

import epics
import h5py
import numpy as np
import pytest

from ca_helpers import declared_pvs, unconnected, wait_for

CAM, HDF, IMAGE = "ad:cam1:", "ad:HDF1:", "ad:image1:"


def stock_devices(write_path: str) -> list:
    """The stock ophyd/apstools classes the issue names, plus the project's own device,
    as factories: several share PVs, so build each once the previous one is connected
    (pyepics' ``get_pv`` can lose the connection callback of a signal that joins a
    shared PV while it connects; the loader closes that race, stock ophyd does not)."""
    from apstools.devices import AD_EpicsFileNameHDF5Plugin, SimDetectorCam_V34
    from ophyd.areadetector import SimDetectorCam
    from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
    from ophyd.areadetector.plugins import HDF5Plugin, ImagePlugin

    from loader.devices.area_detector import SimDetectorV34

    class StockHDF5(FileStoreHDF5IterativeWrite, HDF5Plugin):
        pass

    return [
        lambda: SimDetectorCam("ad:cam1:", name="cam_stock"),
        lambda: SimDetectorCam_V34("ad:cam1:", name="cam_v34"),
        lambda: StockHDF5("ad:HDF1:", name="hdf_stock", write_path_template=write_path),
        lambda: AD_EpicsFileNameHDF5Plugin("ad:HDF1:", name="hdf_epics", write_path_template=write_path),
        lambda: ImagePlugin("ad:image1:", name="image_stock"),
        lambda: SimDetectorV34("ad:", name="adsimdet", write_path_template=write_path),
    ]


def put(pv: str, value, timeout: float = 10.0):
    """caput with put-completion; returns pyepics' status (1 on success)."""
    return epics.caput(pv, value, wait=True, timeout=timeout)


def get(pv: str, as_string: bool = False):
    value = epics.caget(pv, as_string=as_string, timeout=5.0, use_monitor=False)
    assert value is not None, f"{pv} did not answer"
    return value


def acquire_one(**cam_settings) -> None:
    settings = {"ImageMode": 0, "AcquireTime": 0.001, "AcquirePeriod": 0, "ArrayCallbacks": 1}
    settings.update(cam_settings)
    for name, value in settings.items():
        put(CAM + name, value)
    put(CAM + "Acquire", 1)


@pytest.fixture
def hdf_idle(ad_ioc):
    """HDF1 stopped, enabled and pointed at the IOC's data directory; restored after."""
    put(HDF + "Capture", 0)
    put(HDF + "EnableCallbacks", 1)
    put(HDF + "FilePath", str(ad_ioc.data_dir))
    put(HDF + "FileName", "test")
    put(HDF + "FileTemplate", "%s%s_%3.3d.h5")
    put(HDF + "AutoIncrement", 1)
    put(HDF + "AutoSave", 1)
    yield ad_ioc
    put(HDF + "Capture", 0)
    put(HDF + "FilePath", str(ad_ioc.data_dir))


def test_all_declared_pvs_connect(ad_ioc):
    names: set[str] = set()
    for build in stock_devices(str(ad_ioc.data_dir) + "/"):
        device = build()
        declared = declared_pvs(device)
        assert unconnected(sorted(declared), timeout=15.0) == [], device.name
        device.wait_for_connection(all_signals=True, timeout=15.0)   # ophyd's metadata too
        names |= declared
    assert len(names) > 450


@pytest.mark.parametrize("pv, strings", [
    (CAM + "ImageMode", ["Single", "Multiple", "Continuous"]),
    (CAM + "ImageMode_RBV", ["Single", "Multiple", "Continuous"]),
    (CAM + "Acquire", ["Done", "Acquire"]),
    (CAM + "AcquireBusy", ["Done", "Acquiring"]),
    (CAM + "SimMode_RBV", ["LinearRamp", "Peaks", "Sine", "Offset&Noise"]),
    (CAM + "TriggerMode", ["Internal", "External"]),
    (HDF + "FileWriteMode_RBV", ["Single", "Capture", "Stream"]),
    (HDF + "Capture", ["Done", "Capture"]),
    (HDF + "AutoIncrement", ["No", "Yes"]),
    (HDF + "EnableCallbacks_RBV", ["Disable", "Enable"]),
])
def test_enum_strings(ad_ioc, pv, strings):
    chan = epics.PV(pv)
    assert chan.wait_for_connection(5.0)
    chan.get_ctrlvars()
    assert list(chan.enum_strs) == strings
    # not disconnect(): pyepics gives every PV object of one name the same channel,
    # and clearing it here left ophyd's signals of other tests on a dead channel id
    # (an "Unexpected channel ID" traceback each when they were released at exit)


def test_identity_and_default_geometry(ad_ioc):
    assert get(HDF + "PluginType_RBV", as_string=True) == "NDFileHDF5"
    assert get(IMAGE + "PluginType_RBV", as_string=True) == "NDPluginStdArrays"
    assert get(CAM + "MaxSizeX_RBV") == 1024 and get(CAM + "MaxSizeY_RBV") == 1024
    assert get(CAM + "ArraySizeX_RBV") == 1024 and get(CAM + "ArraySizeY_RBV") == 1024
    assert get(CAM + "DataType_RBV", as_string=True) == "UInt8"
    assert get(CAM + "ColorMode_RBV", as_string=True) == "Mono"


def test_readback_pairs_follow_setpoints(ad_ioc):
    put(CAM + "AcquireTime", 0.25)
    assert get(CAM + "AcquireTime_RBV") == pytest.approx(0.25)
    put(CAM + "SizeX", 5000)                       # clipped to the sensor
    assert get(CAM + "SizeX_RBV") == 1024
    put(HDF + "FileName", "a_rather_long_file_name_" + "x" * 60)
    assert get(HDF + "FileName_RBV", as_string=True) == "a_rather_long_file_name_" + "x" * 60
    put(CAM + "AcquireTime", 0.001)


def test_acquire_put_completion_and_state_transitions(ad_ioc):
    seen = {"busy": [], "rbv": [], "state": []}
    monitors = [
        epics.PV(CAM + "AcquireBusy", callback=lambda value=None, **kw: seen["busy"].append(value)),
        epics.PV(CAM + "Acquire_RBV", callback=lambda value=None, **kw: seen["rbv"].append(value)),
        epics.PV(CAM + "DetectorState_RBV",
                 callback=lambda value=None, **kw: seen["state"].append(value)),
    ]
    for mon in monitors:
        assert mon.wait_for_connection(5.0)
    wait_for(lambda: all(seen.values()), 5.0, message="initial monitor values")
    before = get(CAM + "ArrayCounter_RBV")
    put(CAM + "ImageMode", "Multiple")
    put(CAM + "NumImages", 3)
    put(CAM + "AcquireTime", 0.05)
    put(CAM + "AcquirePeriod", 0.1)
    started = time.monotonic()
    assert put(CAM + "Acquire", 1) == 1               # returns when all 3 images are done
    elapsed = time.monotonic() - started
    assert elapsed >= 0.2                             # 3 images at a 0.1 s period
    assert get(CAM + "Acquire_RBV") == 0
    assert get(CAM + "ArrayCounter_RBV") == before + 3
    assert get(CAM + "NumImagesCounter_RBV") == 3
    wait_for(lambda: seen["busy"][-1] == 0 and seen["rbv"][-1] == 0, 5.0, message="Done")
    assert 1 in seen["busy"] and 1 in seen["rbv"]
    assert {1, 0} <= set(seen["state"])                # Acquire, then Idle
    for mon in monitors:                               # (the channel itself is shared: kept)
        mon.clear_callbacks()
        mon.clear_auto_monitor()
    put(CAM + "AcquirePeriod", 0)
    put(CAM + "AcquireTime", 0.001)


def test_continuous_acquisition_stops_on_acquire_zero(ad_ioc):
    put(CAM + "ImageMode", "Continuous")
    put(CAM + "AcquireTime", 0.01)
    epics.caput(CAM + "Acquire", 1)                   # no wait: runs until stopped
    start = get(CAM + "ArrayCounter_RBV")
    wait_for(lambda: get(CAM + "ArrayCounter_RBV") >= start + 3, 10.0, message="frames")
    put(CAM + "Acquire", 0)
    wait_for(lambda: get(CAM + "Acquire_RBV") == 0, 5.0, message="Acquire_RBV=0")
    assert get(CAM + "DetectorState_RBV", as_string=True) == "Idle"
    put(CAM + "ImageMode", "Single")
    put(CAM + "AcquireTime", 0.001)


def _spot_centre(image: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted centre (x, y) of the pixels above half the maximum."""
    values = image.astype(float)
    weights = np.where(values > values.max() / 2, values, 0.0)
    ys, xs = np.indices(image.shape)
    return (xs * weights).sum() / weights.sum(), (ys * weights).sum() / weights.sum()


def _last_image() -> np.ndarray:
    x, y = get(IMAGE + "ArraySize0_RBV"), get(IMAGE + "ArraySize1_RBV")
    data = epics.caget(IMAGE + "ArrayData", count=x * y, timeout=10.0, use_monitor=False)
    return np.asarray(data, dtype=np.uint8).reshape(y, x)


def test_peak_follows_peak_start(ad_ioc):
    put(IMAGE + "EnableCallbacks", 1)
    put(CAM + "SimMode", "Peaks")
    for name, value in {"Gain": 200, "Offset": 0, "Noise": 5, "PeakNumX": 1, "PeakNumY": 1,
                        "PeakWidthX": 15, "PeakWidthY": 25, "PeakVariation": 0,
                        "PeakStartY": 400}.items():
        put(CAM + name, value)
    centres = []
    for start_x in (300, 700):
        put(CAM + "PeakStartX", start_x)
        assert get(CAM + "PeakStartX_RBV") == start_x
        acquire_one()
        assert (get(IMAGE + "ArraySize0_RBV"), get(IMAGE + "ArraySize1_RBV"),
                get(IMAGE + "ArraySize2_RBV")) == (1024, 1024, 0)
        centres.append(_spot_centre(_last_image()))
    (x1, y1), (x2, y2) = centres
    assert x1 == pytest.approx(300, abs=3) and x2 == pytest.approx(700, abs=3)
    assert y1 == pytest.approx(400, abs=3) and y2 == pytest.approx(400, abs=3)


def test_a_moved_array_counter_means_the_frame_is_there(ad_ioc):
    """A viewer reads ``image1:ArrayData`` when ``ArrayCounter_RBV`` (the plugin's or
    the cam's) moves: as in areaDetector, the frame is posted before the counters.
    The IOC used to count first, and a read in between got the previous frame (a
    spot where the last load had put it, seen in test_loader's spot test)."""
    width = 1024
    for name, value in {"SimMode": "Peaks", "Gain": 200, "Offset": 0, "Noise": 0,
                        "PeakNumX": 1, "PeakNumY": 1, "PeakWidthX": 10, "PeakWidthY": 10,
                        "PeakVariation": 0, "PeakStartY": 500, "MinX": 0, "MinY": 0,
                        "BinX": 1, "BinY": 1, "SizeX": width, "SizeY": width}.items():
        put(CAM + name, value)
    put(IMAGE + "EnableCallbacks", 1)
    spot_x: list = []                       # where the spot of the last ArrayData update is
    when_counted: dict = {"image": [], "cam": []}     # ... each time a counter moved
    data = epics.PV(IMAGE + "ArrayData", auto_monitor=True,
                    callback=lambda value=None, **kw: spot_x.append(int(np.argmax(value)) % width))
    counters = [epics.PV(prefix + "ArrayCounter_RBV", auto_monitor=True,
                         callback=lambda key=key, **kw: when_counted[key].append(spot_x[-1:]))
                for key, prefix in (("image", IMAGE), ("cam", CAM))]
    try:
        for pv in [data] + counters:
            assert pv.wait_for_connection(5.0)
        wait_for(lambda: spot_x and all(when_counted.values()), 10.0, message="initial monitor values")
        for moment in when_counted.values():
            moment.clear()
        starts = (200, 600, 850)
        for start in starts:
            put(CAM + "PeakStartX", start)
            acquire_one()
        wait_for(lambda: all(len(moment) == len(starts) for moment in when_counted.values()),
                 10.0, message="both counters to move once per frame")
        for key, moment in when_counted.items():
            seen = [xs[0] if xs else None for xs in moment]
            assert seen == [pytest.approx(s, abs=3) for s in starts], \
                f"{key} ArrayCounter_RBV moved before its frame was in image1:ArrayData: {seen}"
    finally:
        for pv in [data] + counters:
            pv.clear_callbacks()
            pv.clear_auto_monitor()


def test_stream_capture_of_several_frames(hdf_idle):
    put(HDF + "FileWriteMode", "Stream")
    put(HDF + "NumCapture", 4)
    put(HDF + "FileNumber", 7)
    put(CAM + "ImageMode", "Multiple")
    put(CAM + "NumImages", 4)
    put(CAM + "AcquireTime", 0.001)
    epics.caput(HDF + "Capture", 1)                   # busy: completes when 4 frames are in
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    assert get(HDF + "FilePathExists_RBV") == 1
    assert get(HDF + "FileNumber_RBV") == 8            # AutoIncrement when the file opened
    put(CAM + "Acquire", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to stop by itself")
    assert get(HDF + "NumCaptured_RBV") == 4
    assert get(HDF + "WriteStatus") == 0
    full = get(HDF + "FullFileName_RBV", as_string=True)
    assert full == os.path.join(str(hdf_idle.data_dir), "test_007.h5")
    with h5py.File(full, "r") as f:
        data = f["/entry/data/data"]
        assert data.shape == (4, 1024, 1024) and data.dtype == np.uint8
    assert not list(Path(hdf_idle.data_dir).glob("*.partial"))


def test_capture_mode_buffers_then_writes(hdf_idle):
    put(HDF + "FileWriteMode", "Capture")
    put(HDF + "NumCapture", 3)
    put(CAM + "ImageMode", "Multiple")
    put(CAM + "NumImages", 3)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    put(CAM + "Acquire", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to finish")
    full = get(HDF + "FullFileName_RBV", as_string=True)
    with h5py.File(full, "r") as f:
        assert f["/entry/data/data"].shape == (3, 1024, 1024)
    put(HDF + "FileWriteMode", "Stream")


def test_stream_stops_at_capture_zero(hdf_idle):
    put(HDF + "FileWriteMode", "Stream")
    put(HDF + "NumCapture", 0)                        # until stopped
    put(CAM + "ImageMode", "Multiple")
    put(CAM + "NumImages", 2)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    put(CAM + "Acquire", 1)
    put(CAM + "Acquire", 1)
    wait_for(lambda: get(HDF + "NumCaptured_RBV") == 4, 5.0, message="4 frames captured")
    assert get(HDF + "Capture_RBV") == 1
    put(HDF + "Capture", 0)                           # closes the file before Capture_RBV=0
    assert get(HDF + "Capture_RBV") == 0
    with h5py.File(get(HDF + "FullFileName_RBV", as_string=True), "r") as f:
        assert f["/entry/data/data"].shape == (4, 1024, 1024)


def test_single_mode_autosave_writes_a_file_per_frame(hdf_idle):
    put(HDF + "FileWriteMode", "Single")
    put(HDF + "FileName", "single")
    put(HDF + "FileNumber", 1)
    put(CAM + "ImageMode", "Multiple")
    put(CAM + "NumImages", 2)
    put(CAM + "Acquire", 1)
    folder = Path(hdf_idle.data_dir)
    wait_for(lambda: len(list(folder.glob("single_*.h5"))) == 2, 10, message="two files")
    assert get(HDF + "FileNumber_RBV") == 3
    with h5py.File(folder / "single_002.h5", "r") as f:
        assert f["/entry/data/data"].shape == (1, 1024, 1024)
    put(HDF + "FileWriteMode", "Stream")


def test_lazy_open_waits_for_the_first_frame(hdf_idle):
    put(HDF + "FileWriteMode", "Stream")
    put(HDF + "LazyOpen", "Yes")
    put(HDF + "FileName", "lazy")
    put(HDF + "NumCapture", 1)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    assert not list(Path(hdf_idle.data_dir).glob("lazy_*"))    # nothing opened yet
    acquire_one()
    wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to finish")
    assert len(list(Path(hdf_idle.data_dir).glob("lazy_*.h5"))) == 1
    put(HDF + "LazyOpen", "No")


def test_missing_file_path_fails_visibly(hdf_idle):
    bad = "/proc/no_such_directory/deeper/"
    put(HDF + "FilePath", bad)
    assert get(HDF + "FilePath_RBV", as_string=True) == bad
    assert get(HDF + "FilePathExists_RBV") == 0
    put(HDF + "CreateDirectory", -3)                  # may create levels, but not under /proc
    put(HDF + "FileWriteMode", "Stream")
    epics.caput(HDF + "Capture", 1, wait=True, timeout=5.0)
    assert get(HDF + "Capture_RBV") == 0
    assert get(HDF + "WriteStatus", as_string=True) == "Write error"
    assert "path" in get(HDF + "WriteMessage", as_string=True).lower()
    assert get(HDF + "FilePathExists_RBV") == 0
    assert get(CAM + "Acquire_RBV") == 0              # the IOC still answers


def test_unwritable_directory_fails_without_crashing(hdf_idle):
    put(HDF + "FilePath", "/proc/")                   # exists, but no file can be created there
    assert get(HDF + "FilePathExists_RBV") == 1
    put(HDF + "FileWriteMode", "Stream")
    epics.caput(HDF + "Capture", 1, wait=True, timeout=5.0)
    assert get(HDF + "Capture_RBV") == 0
    assert get(HDF + "WriteStatus", as_string=True) == "Write error"
    assert get(HDF + "WriteMessage", as_string=True)
    assert hdf_idle.running
    put(HDF + "FilePath", str(hdf_idle.data_dir))     # and it recovers
    put(HDF + "NumCapture", 1)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    acquire_one()
    wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to finish")
    assert get(HDF + "WriteStatus", as_string=True) == "Write OK"


def test_create_directory_makes_missing_levels(hdf_idle):
    target = Path(hdf_idle.data_dir) / "new" / "levels"
    put(HDF + "FilePath", str(target))
    assert get(HDF + "FilePathExists_RBV") == 0
    put(HDF + "CreateDirectory", -3)
    put(HDF + "FileWriteMode", "Stream")
    put(HDF + "NumCapture", 1)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    assert target.is_dir() and get(HDF + "FilePathExists_RBV") == 1
    acquire_one()
    wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to finish")
    assert list(target.glob("test_*.h5"))


def test_losing_the_directory_mid_file_is_reported_not_fatal(hdf_idle):
    """The disk going away under an open file (like a full or failed disk) is a visible error."""
    import shutil

    folder = Path(hdf_idle.data_dir) / "vanishing"
    folder.mkdir()
    put(HDF + "FilePath", str(folder))
    put(HDF + "FileWriteMode", "Stream")
    put(HDF + "NumCapture", 0)
    epics.caput(HDF + "Capture", 1)
    wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
    acquire_one()
    wait_for(lambda: get(HDF + "NumCaptured_RBV") == 1, 5.0, message="one frame captured")
    shutil.rmtree(folder)
    put(HDF + "Capture", 0)
    assert get(HDF + "Capture_RBV") == 0
    assert get(HDF + "WriteStatus", as_string=True) == "Write error"
    assert "closing" in get(HDF + "WriteMessage", as_string=True)
    assert hdf_idle.running
    acquire_one()                                     # the IOC carries on
    assert get(CAM + "DetectorState_RBV", as_string=True) == "Idle"


def test_data_type_and_binning_shape_the_file(hdf_idle):
    put(CAM + "DataType", "UInt16")
    put(CAM + "BinX", 2)
    put(CAM + "BinY", 4)
    try:
        assert (get(CAM + "ArraySizeX_RBV"), get(CAM + "ArraySizeY_RBV")) == (512, 256)
        assert get(CAM + "ArraySize_RBV") == 512 * 256 * 2
        put(HDF + "FileWriteMode", "Stream")
        put(HDF + "FileName", "binned")
        put(HDF + "NumCapture", 1)
        epics.caput(HDF + "Capture", 1)
        wait_for(lambda: get(HDF + "Capture_RBV") == 1, 5.0, message="Capture_RBV=1")
        acquire_one()
        wait_for(lambda: get(HDF + "Capture_RBV") == 0, 10.0, message="capture to finish")
        with h5py.File(get(HDF + "FullFileName_RBV", as_string=True), "r") as f:
            data = f["/entry/data/data"]
            assert data.shape == (1, 256, 512) and data.dtype == np.uint16
        assert get(HDF + "DataType_RBV", as_string=True) == "UInt16"
    finally:
        put(CAM + "DataType", "UInt8")
        put(CAM + "BinX", 1)
        put(CAM + "BinY", 1)


def test_a_moved_array_counter_comes_with_the_frame_shape(ad_ioc):
    """A client that sizes its view when ``image1:ArrayCounter_RBV`` moves reads the
    plugin's ``ArraySize0_RBV``: areaDetector posts the shape with the count, the
    count last.  The IOC counted first, so right after a change of frame size the
    counter moved while the plugin still gave the previous frame's width."""
    put(IMAGE + "EnableCallbacks", 1)
    width = epics.PV(IMAGE + "ArraySize0_RBV", auto_monitor=True)
    widths_when_counted: list = []
    counter = epics.PV(IMAGE + "ArrayCounter_RBV", auto_monitor=True,
                       callback=lambda **kw: widths_when_counted.append(width.value))
    try:
        for pv in (width, counter):
            assert pv.wait_for_connection(5.0)
        wait_for(lambda: widths_when_counted, 10.0, message="initial monitor values")
        widths_when_counted.clear()
        sizes = (512, 256, 1024)
        for size in sizes:
            put(CAM + "SizeX", size)
            acquire_one(BinX=1, MinX=0)
        wait_for(lambda: len(widths_when_counted) == len(sizes), 10.0,
                 message="image1:ArrayCounter_RBV to move once per frame")
        assert widths_when_counted == list(sizes), \
            "ArrayCounter_RBV moved before ArraySize0_RBV had the frame's width"
    finally:
        put(CAM + "SizeX", 1024)
        for pv in (width, counter):
            pv.clear_callbacks()
            pv.clear_auto_monitor()
