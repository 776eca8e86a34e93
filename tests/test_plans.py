"""The plans from plans/ on the real simulated IOCs: peak finding on the noisy
Lorentzian of m1, temperature settle-and-count."""
from __future__ import annotations

import pytest
from bluesky import plan_stubs as bps

from plans.peak_finding import findpeak_multipass, repeat_findpeak, two_pass_scan
from plans.temperature import go_to_temperature, temperature_count
from session_support import data_directory, load_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bl(gp_ioc_process, tmp_path_factory):
    with data_directory(tmp_path_factory.mktemp("plans") / "data"):
        yield load_training(labels=["motor", "simulator", "scalers", "calcs", "positioner"])


def true_peak(bl) -> tuple[float, float]:
    """Centre and half-width the lorentzian_swait setup put into the record (B, C)."""
    channels = bl["calcs"].calc1.channels
    return channels.B.input_value.get(), abs(channels.C.input_value.get())


def test_two_pass_scan_leaves_m1_on_the_peak(bl):
    center, hwhm = true_peak(bl)
    coarse_step = 3.2 / 16
    fine_step = 2 * coarse_step / 20
    before = len(list(bl.cat))
    bl.RE(two_pass_scan(start=-1.6, stop=1.6, num=17, fine_num=21))   # noisy and m1 of the session
    assert len(list(bl.cat)) == before + 2
    assert abs(bl["m1"].position - center) <= max(fine_step, hwhm) + 0.002


def test_two_pass_scan_finds_a_narrow_peak_one_coarse_step_from_the_end(bl):
    """A peak narrower than the coarse step, one step from the start of the range:
    its coarse half-max midpoint was ~0.2 off, and the fine pass missed it."""
    channels = bl["calcs"].calc1.channels
    before = channels.B.input_value.get(), channels.C.input_value.get()
    try:
        channels.B.input_value.put(-1.486, wait=True)     # centre
        channels.C.input_value.put(0.05, wait=True)       # half width
        bl.RE(two_pass_scan(start=-1.6, stop=1.6, num=17, fine_num=21))
        assert abs(bl["m1"].position - -1.486) <= 0.02 + 0.002
    finally:
        channels.B.input_value.put(before[0], wait=True)
        channels.C.input_value.put(before[1], wait=True)


def test_findpeak_multipass_narrows(bl):
    center, hwhm = true_peak(bl)
    m1 = bl["m1"]
    bl.RE(bps.mv(m1, center + 0.3))
    uids = bl.RE(findpeak_multipass(width=1.0, num=21, passes=3))
    assert len(uids) == 3
    widths = [bl.cat[u].metadata["start"]["width"] for u in uids]
    assert widths[2] < widths[0]
    assert abs(m1.position - center) <= max(widths[-1] / 20, hwhm) + 0.002


def test_repeat_findpeak_returns_each_centre(bl):
    center, hwhm = true_peak(bl)
    result = []

    def plan():
        result.extend((yield from repeat_findpeak(iters=2, spread=0.1, seed=1,
                                                  width=0.6, num=13, passes=2)))
    bl.RE(plan())
    assert len(result) == 2
    for found in result:
        assert abs(found - center) <= max(0.6 / 12, hwhm) + 0.002


def test_temperature_goes_settles_and_counts(bl):
    temperature = bl["temperature"]
    target = round(temperature.position + 4.0, 1)
    uid, = bl.RE(temperature_count(target, [bl["scaler1"]], timeout=30))
    assert abs(temperature.readback.get() - target) <= temperature.tolerance.get() + 1e-9
    data = bl.cat[uid].primary.read()
    assert "temperature" in data and "I0" in data
    assert bl.cat[uid].metadata["start"]["temperature_setpoint"] == target


def test_temperature_timeout_is_bounded(bl):
    from bluesky.run_engine import WaitForTimeoutError
    temperature = bl["temperature"]
    far = temperature.position + 50          # 2 degrees every 2 s: far out of reach in 1 s
    with pytest.raises(WaitForTimeoutError):
        bl.RE(go_to_temperature(far, timeout=1.0))
    bl.RE(go_to_temperature(temperature.position, timeout=30))   # put it back, settled


def test_plan_without_session_device_says_what_is_missing(bl):
    from loader.session import default_device
    with pytest.raises(LookupError, match="no_such_device"):
        default_device("no_such_device")
