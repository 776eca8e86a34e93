"""The simulated motor records of the ``gp:`` IOC, driven by ophyd over real Channel Access."""
from __future__ import annotations

import threading
import time

import pytest
from ophyd import EpicsSignal, EpicsSignalRO
from ophyd.utils.errors import LimitError

from ca_helpers import blocking_gets_by_thread, declared_pvs, unconnected, wait_for
from loader.devices.motor import EpicsMotorWithSREV

PREFIX = "gp:"


def motor(gp_ioc, number: int, velocity: float = 50.0, acceleration: float = 0.05):
    """A connected ``EpicsMotorWithSREV`` on ``gp:m<number>`` with a known speed."""
    mtr = EpicsMotorWithSREV(f"{PREFIX}m{number}", name=f"m{number}")
    mtr.wait_for_connection(timeout=10)
    mtr.velocity.put(velocity, wait=True)
    mtr.acceleration.put(acceleration, wait=True)
    return mtr


def field(pvname: str, cls=EpicsSignalRO, **kwargs):
    """A connected signal on one more record field."""
    sig = cls(pvname, name=pvname.replace(":", "_").replace(".", "_"), **kwargs)
    sig.wait_for_connection(timeout=10)
    return sig


class Recorder:
    """Collect every monitor value of a signal (thread-safe)."""

    def __init__(self, signal):
        self.values: list = []
        self._lock = threading.Lock()
        self._cid = signal.subscribe(self._append, run=False)
        self._signal = signal

    def _append(self, value=None, **kwargs):
        with self._lock:
            self.values.append(value)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.values)

    def close(self):
        self._signal.unsubscribe(self._cid)


def test_every_declared_pv_connects(gp_ioc):
    pvs = set()
    for number in range(1, 17):
        pvs |= declared_pvs(EpicsMotorWithSREV(f"{PREFIX}m{number}", name=f"m{number}"))
    assert f"{PREFIX}m16.SREV" in pvs
    assert unconnected(pvs, timeout=15) == []


def test_move_takes_time_from_velo_and_accl(gp_ioc):
    m2 = motor(gp_ioc, 2, velocity=2.0, acceleration=0.2)
    m2.move(0.0, wait=True, timeout=10)
    readbacks = Recorder(m2.user_readback)
    try:
        start = time.monotonic()
        m2.move(1.0, wait=True, timeout=10)
        elapsed = time.monotonic() - start
    finally:
        readbacks.close()
    expected = 1.0 / 2.0 + 0.2            # trapezoid: distance/VELO + ACCL
    assert expected - 0.05 < elapsed < expected + 0.5
    assert m2.position == pytest.approx(1.0)
    intermediate = [v for v in readbacks.snapshot() if 0.0 < v < 1.0]
    assert len(intermediate) >= 5          # RBV is updated while moving
    assert m2.motor_done_move.get(use_monitor=False) == 1
    assert m2.motor_is_moving.get(use_monitor=False) == 0


def test_zero_length_move_toggles_dmov(gp_ioc):
    m3 = motor(gp_ioc, 3)
    dmov = Recorder(m3.motor_done_move)
    try:
        status = m3.move(m3.position, wait=False)
        status.wait(timeout=5)
        wait_for(lambda: dmov.snapshot()[-2:] == [0, 1], timeout=5, message="DMOV 1→0→1")
    finally:
        dmov.close()
    assert status.success


def test_a_move_requested_while_the_last_one_settles_is_made(gp_ioc):
    """A new VAL while the record waits DLY after a move (MOVN 0, DMOV still 0)
    is a new move, not a request the ending move forgets."""
    m5 = motor(gp_ioc, 5)
    m5.move(0.0, wait=True, timeout=10)
    delay = field("gp:m5.DLY", EpicsSignal)
    delay.put(0.5, wait=True)
    try:
        moving = field("gp:m5.MOVN")
        status = m5.move(0.1, wait=False)
        wait_for(lambda: m5.motor_done_move.get(use_monitor=False) == 0
                 and moving.get(use_monitor=False) == 0
                 and m5.user_readback.get(use_monitor=False) == pytest.approx(0.1),
                 timeout=5, interval=0.01, message="settling at 0.1")
        m5.user_setpoint.put(0.2, wait=False)          # another client, during DLY
        status.wait(10)
        wait_for(lambda: m5.motor_done_move.get(use_monitor=False) == 1, timeout=10,
                 message="DMOV 1")
    finally:
        delay.put(0.0, wait=True)
    assert m5.user_readback.get(use_monitor=False) == pytest.approx(0.2)


def test_soft_limit_violation_is_refused(gp_ioc):
    m4 = motor(gp_ioc, 4)
    low, high = m4.limits
    assert (low, high) == (m4.low_limit_travel.get(), m4.high_limit_travel.get())
    assert low < high
    with pytest.raises(LimitError):
        m4.move(high + 1, wait=True, timeout=5)
    # bypassing ophyd's own check, the record itself refuses the move
    before = m4.position
    m4.user_setpoint.put(high + 1, force=True, wait=True, timeout=5)
    assert m4.user_setpoint.get(use_monitor=False) == pytest.approx(before)
    assert m4.position == pytest.approx(before)
    assert field(f"{PREFIX}m4.LVIO").get(use_monitor=False) == 1


def test_limits_follow_hlm_llm(gp_ioc):
    m9 = motor(gp_ioc, 9)
    try:
        m9.high_limit_travel.put(12.5, wait=True)
        m9.low_limit_travel.put(-7.5, wait=True)
        wait_for(lambda: m9.limits == (-7.5, 12.5), timeout=5,
                 message="limits from VAL's DRVH/DRVL")
    finally:
        m9.high_limit_travel.put(100.0, wait=True)
        m9.low_limit_travel.put(-100.0, wait=True)


def test_a_limit_change_makes_no_blocking_get_on_the_monitor_thread(gp_ioc, monkeypatch):
    """ophyd's own limit callback fetched VAL's CTRL fields with a blocking get on its
    one monitor thread, which holds every device's updates meanwhile (1000 motors:
    36,000 updates queued when the load returned).  Ours fetches them aside."""
    import epics
    from ophyd import EpicsMotor
    from loader.devices.motor import OPHYD_LIMIT_CALLBACK
    plain = EpicsMotor(f"{PREFIX}m9", name="m9_plain")    # ophyd still has the callback we replace
    assert OPHYD_LIMIT_CALLBACK in [getattr(cb, "__qualname__", "") for cb in
                                    plain.high_limit_travel._unwrapped_callbacks["value"].values()]
    plain.destroy()
    m9 = motor(gp_ioc, 9)
    blocking = blocking_gets_by_thread(monkeypatch)
    try:        # another client's change: m9 hears of it by its monitor only
        epics.caput(f"{PREFIX}m9.HLM", 11.5, wait=True)
        wait_for(lambda: m9.limits == (-100.0, 11.5), timeout=5, message="limits from VAL's DRVH")
    finally:
        epics.caput(f"{PREFIX}m9.HLM", 100.0, wait=True)
    wait_for(lambda: m9.limits == (-100.0, 100.0), timeout=5, message="limits back")
    assert [pv for thread, pv in blocking if thread == "monitor" and pv.startswith(f"{PREFIX}m9.")] == []


def test_stop_mid_move(gp_ioc):
    m5 = motor(gp_ioc, 5, velocity=2.0, acceleration=0.1)
    m5.move(0.0, wait=True, timeout=10)
    status = m5.move(5.0, wait=False)
    wait_for(lambda: m5.position > 0.2, timeout=5, message="motion started")
    m5.stop()
    wait_for(lambda: status.done, timeout=3, message="move ended after STOP")
    stopped_at = m5.position
    assert 0.2 < stopped_at < 4.0
    assert m5.motor_done_move.get(use_monitor=False) == 1
    # the record's VAL is set back to where the motor stopped
    wait_for(lambda: m5.user_setpoint.get(use_monitor=False) == pytest.approx(stopped_at),
             timeout=2, message="VAL = RBV after stop")
    m5.move(0.0, wait=True, timeout=10)


def test_spmg_stop_halts_and_go_allows_moves(gp_ioc):
    m10 = motor(gp_ioc, 10, velocity=2.0, acceleration=0.1)
    spmg = field(f"{PREFIX}m10.SPMG", EpicsSignal, string=True)
    m10.move(0.0, wait=True, timeout=10)
    status = m10.move(5.0, wait=False)
    try:
        wait_for(lambda: m10.position > 0.2, timeout=5, message="motion started")
        spmg.put("Stop", wait=True)
        wait_for(lambda: status.done, timeout=3, message="move ended after SPMG=Stop")
        assert m10.position < 4.0
    finally:
        spmg.put("Go", wait=True)
    m10.move(0.5, wait=True, timeout=10)
    assert m10.position == pytest.approx(0.5)


def test_srev_sets_step_size(gp_ioc):
    m6 = motor(gp_ioc, 6)
    resolution = field(f"{PREFIX}m6.MRES")
    assert m6.steps_per_revolution.get() == 200
    assert resolution.get(use_monitor=False) == pytest.approx(0.01)
    m6.move(0.1234, wait=True, timeout=10)
    assert m6.position == pytest.approx(0.12)
    try:
        m6.steps_per_revolution.put(2000, wait=True)
        wait_for(lambda: resolution.get(use_monitor=False) == pytest.approx(0.001), timeout=5,
                 message="MRES = UREV/SREV")
        m6.move(0.1234, wait=True, timeout=10)
        assert m6.position == pytest.approx(0.123)
        m6.move(0.5678, wait=True, timeout=10)
        assert m6.position == pytest.approx(0.568)
    finally:
        m6.steps_per_revolution.put(200, wait=True)
        m6.move(0.0, wait=True, timeout=10)


def test_set_current_position_changes_offset(gp_ioc):
    m7 = motor(gp_ioc, 7)
    m7.move(1.0, wait=True, timeout=10)
    offset = m7.user_offset.get(use_monitor=False)
    try:
        m7.set_current_position(5.0)
        wait_for(lambda: m7.position == pytest.approx(5.0), timeout=5, message="RBV redefined")
        assert m7.user_offset.get(use_monitor=False) == pytest.approx(offset + 4.0)
        shifted = pytest.approx((-100 + offset + 4.0, 100 + offset + 4.0))
        wait_for(lambda: m7.limits == shifted, timeout=5, message="soft limits follow OFF")
        m7.move(5.5, wait=True, timeout=10)     # moves are in the new user coordinates
        assert m7.position == pytest.approx(5.5)
    finally:
        m7.user_offset.put(offset, wait=True)
        m7.move(0.0, wait=True, timeout=10)


def test_direction_negative_flips_user_coordinates(gp_ioc):
    m11 = motor(gp_ioc, 11)
    dial = field(f"{PREFIX}m11.DRBV")
    m11.move(2.0, wait=True, timeout=10)
    try:
        m11.user_offset_dir.put(1, wait=True)
        wait_for(lambda: m11.position == pytest.approx(-2.0), timeout=5, message="RBV = -DRBV")
        assert dial.get(use_monitor=False) == pytest.approx(2.0)
        m11.move(-3.0, wait=True, timeout=10)
        assert dial.get(use_monitor=False) == pytest.approx(3.0)
    finally:
        m11.user_offset_dir.put(0, wait=True)
        m11.move(0.0, wait=True, timeout=10)


def test_hardware_limit_switch_stops_the_move(gp_ioc):
    """With SREV=2000 the simulated travel (±32000 steps) is ±32: beyond it HLS trips."""
    m8 = motor(gp_ioc, 8, velocity=200.0, acceleration=0.05)
    try:
        m8.steps_per_revolution.put(2000, wait=True)
        status = m8.move(40.0, wait=False)
        wait_for(lambda: status.done, timeout=5, message="move ended at the switch")
        assert not status.success
        assert m8.high_limit_switch.get(use_monitor=False) == 1
        assert m8.position == pytest.approx(32.0)
        m8.move(0.0, wait=True, timeout=5)
        assert m8.high_limit_switch.get(use_monitor=False) == 0
    finally:
        m8.steps_per_revolution.put(200, wait=True)
        m8.move(0.0, wait=True, timeout=10)
