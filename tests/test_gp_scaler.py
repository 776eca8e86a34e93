"""The simulated scaler gp:scaler1 with ophyd's own ScalerCH, over real Channel Access."""
import time

import pytest
from ophyd.scaler import ScalerCH

from ca_helpers import declared_pvs, unconnected, wait_for


@pytest.fixture(scope="module")
def scaler_device(gp_ioc_process):
    if not gp_ioc_process.running:
        gp_ioc_process.start()
    assert unconnected(["gp:scaler1.NM1"], timeout=10) == []
    scaler = ScalerCH("gp:scaler1", name="scaler1")
    scaler.wait_for_connection(timeout=15)
    return scaler


@pytest.fixture
def scaler1(scaler_device):
    scaler = scaler_device
    scaler.count_mode.put("OneShot", wait=True)
    scaler.delay.put(0, wait=True)
    for n in range(2, 17):
        getattr(scaler.channels, f"chan{n:02d}").gate.put("N", wait=True)
    yield scaler
    scaler.count.put(0)


def test_every_declared_pv_connects(scaler1):
    names = declared_pvs(scaler1)
    assert {"gp:scaler1.S32", "gp:scaler1.NM32", "gp:scaler1.G32", "gp:scaler1.PR32"} <= names
    assert unconnected(names, timeout=15) == []


def test_types_and_defaults(scaler1):
    assert scaler1.count.enum_strs == ("Done", "Count")
    assert scaler1.count_mode.enum_strs == ("OneShot", "AutoCount")
    assert scaler1.channels.chan02.gate.enum_strs == ("N", "Y")
    assert scaler1.freq.get() == 1e7
    assert scaler1.channels.chan01.gate.get() == "Y"


def test_counts_for_preset_time_and_completes_the_put(scaler1):
    scaler1.preset_time.put(0.6, wait=True)
    start = time.monotonic()
    status = scaler1.trigger()
    status.wait(10)
    elapsed = time.monotonic() - start
    assert 0.55 <= elapsed < 3.0
    assert scaler1.count.get(use_monitor=False) == 0
    assert scaler1.time.get(use_monitor=False) == pytest.approx(0.6)
    assert scaler1.channels.chan01.s.get(use_monitor=False) == pytest.approx(1e7 * 0.6)
    counts = [getattr(scaler1.channels, f"chan{n:02d}").s.get(use_monitor=False)
              for n in range(2, 17)]
    assert all(c > 0 for c in counts)
    assert all(getattr(scaler1.channels, f"chan{n:02d}").s.get(use_monitor=False) == 0
               for n in range(17, 33))


def test_select_channels_after_names_are_written(scaler1):
    names = {1: "timebase", 2: "I0", 3: "scint", 4: "diode"}
    for n, name in names.items():
        getattr(scaler1.channels, f"chan{n:02d}").chname.put(name, wait=True)
    try:
        scaler1.select_channels(["I0", "diode"])
        scaler1.preset_time.put(0.2, wait=True)
        scaler1.trigger().wait(10)
        reading = scaler1.read()
        assert {"I0", "diode", "scaler1_time"} <= set(reading)
        assert "scint" not in reading
        assert reading["I0"]["value"] > 0
        scaler1.select_channels()
        assert {"timebase", "I0", "scint", "diode"} <= set(scaler1.read())
    finally:
        for n in names:
            getattr(scaler1.channels, f"chan{n:02d}").chname.put("", wait=True)


def test_a_gated_channel_reaching_its_preset_ends_the_count(scaler1):
    scaler1.preset_time.put(0.4, wait=True)
    scaler1.trigger().wait(10)
    rate = scaler1.channels.chan02.s.get(use_monitor=False) / 0.4
    preset = int(rate * 0.3)                       # reached after ~0.3 s of a 10 s count
    scaler1.preset_time.put(10, wait=True)
    scaler1.channels.chan02.preset.put(preset, wait=True)
    scaler1.channels.chan02.gate.put("Y", wait=True)
    start = time.monotonic()
    scaler1.trigger().wait(10)
    assert time.monotonic() - start < 3.0
    assert scaler1.channels.chan02.s.get(use_monitor=False) == preset
    assert scaler1.time.get(use_monitor=False) < 1.0


def test_stop_ends_a_count(scaler1):
    scaler1.preset_time.put(30, wait=True)
    status = scaler1.trigger()
    wait_for(lambda: scaler1.time.get() > 0.1, timeout=5, message="counting")
    scaler1.count.put(0, wait=True)
    status.wait(5)
    assert scaler1.time.get(use_monitor=False) < 5


def test_autocount_counts_in_the_background(scaler1):
    scaler1.auto_count_time.put(0.2, wait=True)
    scaler1.auto_count_delay.put(0.1, wait=True)
    scaler1.count_mode.put("AutoCount", wait=True)
    try:
        first = scaler1.channels.chan01.s.get(use_monitor=False)
        wait_for(lambda: scaler1.channels.chan01.s.get(use_monitor=False) != first, timeout=5,
                 message="auto-count updates")
        scaler1.preset_time.put(0.3, wait=True)
        scaler1.trigger().wait(10)                 # a user count still works
        assert scaler1.time.get(use_monitor=False) == pytest.approx(0.3)
    finally:
        scaler1.count_mode.put("OneShot", wait=True)
