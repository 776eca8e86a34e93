"""swait records of the simulated gp: IOC, over real Channel Access."""
import threading
import time

import numpy as np
import pytest
from apstools.synApps import SwaitRecord, UserCalcsDevice, setup_lorentzian_swait
from ophyd import EpicsMotor, EpicsSignal

from ca_helpers import declared_pvs, monitor_thread_held, unconnected, wait_for

from loader.devices.temperature import SwaitTemperature


def test_every_declared_pv_connects(gp_ioc):
    names = declared_pvs(UserCalcsDevice("gp:", name="calcs")) | declared_pvs(
        SwaitRecord("gp:userCalc1", name="calc1"))
    assert len(names) > 400
    assert unconnected(names, timeout=15) == []


def test_types_and_menus_are_the_records(gp_ioc):
    calc = SwaitRecord("gp:userCalc2", name="calc2")
    calc.wait_for_connection(timeout=10)
    assert calc.scanning_rate.enum_strs == ("Passive", "Event", "I/O Intr", "10 second",
                                            "5 second", "2 second", "1 second", ".5 second",
                                            ".2 second", ".1 second")
    assert calc.channels.A.input_trigger.enum_strs == ("No", "Yes")
    assert calc.output_execute_option.enum_strs[0] == "Every Time"
    assert calc.output_data_option.enum_strs == ("Use VAL", "Use DOL")
    enable = EpicsSignal("gp:userCalcEnable", name="enable")
    assert enable.get(as_string=True) == "Enable"
    assert enable.enum_strs == ("Disable", "Enable")


def test_passive_record_computes_when_an_input_is_written(gp_ioc):
    calc = SwaitRecord("gp:userCalc3", name="calc3")
    calc.wait_for_connection(timeout=10)
    calc.reset()
    calc.calculation.put("A+max(B,2)^2", wait=True)
    calc.channels.A.input_value.put(1, wait=True)
    calc.channels.B.input_value.put(3, wait=True)
    wait_for(lambda: calc.calculated_value.get() == 10.0, timeout=5, message="VAL = 1+3^2")


def test_disabled_record_does_not_process(gp_ioc):
    calc = SwaitRecord("gp:userCalc4", name="calc4")
    enable = EpicsSignal("gp:userCalc4Enable", name="enable4")
    calc.wait_for_connection(timeout=10)
    calc.reset()
    calc.calculation.put("A", wait=True)
    enable.put("Disable", wait=True)
    try:
        calc.channels.A.input_value.put(7, wait=True)
        calc.process_record.put(1, wait=True)
        assert calc.calculated_value.get(use_monitor=False) == 0
    finally:
        enable.put("Enable", wait=True)
    calc.process_record.put(1, wait=True)
    wait_for(lambda: calc.calculated_value.get() == 7, timeout=5, message="enabled again")


def test_input_link_to_a_missing_pv_reports_its_status_and_never_blocks(gp_ioc):
    calc = SwaitRecord("gp:userCalc5", name="calc5")
    calc.wait_for_connection(timeout=10)
    calc.reset()
    calc.channels.A.input_pv.put("nowhere:at:all", wait=True)
    status = EpicsSignal("gp:userCalc5.INAV", name="inav", string=True)
    wait_for(lambda: status.get() == "PV BAD", timeout=5, message="INAV PV BAD")
    calc.calculation.put("B*2", wait=True)
    calc.channels.B.input_value.put(4, wait=True)
    wait_for(lambda: calc.calculated_value.get() == 8, timeout=5, message="still processing")
    calc.channels.A.input_pv.put("", wait=True)
    wait_for(lambda: status.get() == "No PV", timeout=5, message="INAV No PV")


def test_output_link_writes_another_record(gp_ioc):
    source = SwaitRecord("gp:userCalc6", name="calc6")
    target = SwaitRecord("gp:userCalc7", name="calc7")
    for record in (source, target):
        record.wait_for_connection(timeout=10)
        record.reset()
    source.calculation.put("A*3", wait=True)
    source.output_link_pv.put("gp:userCalc7.J", wait=True)
    outv = EpicsSignal("gp:userCalc6.OUTV", name="outv", string=True)
    wait_for(lambda: outv.get() == "PV OK", timeout=5, message="OUTN connected")
    source.channels.A.input_value.put(5, wait=True)
    wait_for(lambda: target.channels.J.input_value.get() == 15, timeout=5, message="J = 15")
    # DOPT "Use DOL": the output is the DOL PV's value, not VAL
    source.output_location_name.put("gp:userCalc7.VAL", wait=True)
    target.calculation.put("-7", wait=True)
    target.process_record.put(1, wait=True)
    wait_for(lambda: source.output_location_data.get() == -7, timeout=5, message="DOLD = -7")
    source.output_data_option.put("Use DOL", wait=True)
    source.channels.A.input_value.put(6, wait=True)
    wait_for(lambda: target.channels.J.input_value.get() == -7, timeout=5, message="J = -7")


def test_temperature_is_connected_only_once_its_first_readback_came(gp_ioc):
    """ophyd drops PVPositioner's required first readback in subclasses: with ophyd's
    monitor thread busy, the temperature counted as connected with position None."""
    with monitor_thread_held():
        held = SwaitTemperature("gp:userCalc8", name="temperature_held")
        signals = [walk.item for walk in held.walk_signals()]
        wait_for(lambda: all(sig.connected for sig in signals), timeout=10, message="signals")
        time.sleep(0.2)
        assert not held.connected, "connected while its first readback was still queued"
    held.wait_for_connection(timeout=10)
    assert held.position == pytest.approx(held.readback.get(), abs=5)
    held.destroy()


@pytest.fixture
def temperature(gp_ioc):
    temperature = SwaitTemperature("gp:userCalc8", name="temperature")
    temperature.wait_for_connection(timeout=10)
    loop = SwaitRecord("gp:userCalc8", name="loop")
    loop.wait_for_connection(timeout=10)
    loop.reset()
    loop.scanning_rate.put("Passive", wait=True)
    loop.channels.A.input_value.put(20, wait=True)
    loop.channels.A.input_pv.put("gp:userCalc8.VAL", wait=True)
    loop.channels.B.input_value.put(20, wait=True)
    loop.channels.C.input_value.put(0.1, wait=True)     # noise
    loop.channels.D.input_value.put(1.0, wait=True)     # max change per update
    loop.channels.E.input_value.put(0.2, wait=True)     # tolerance
    loop.calculated_value.put(20, wait=True)
    wait_for(lambda: loop.channels.A.input_value.get() == 20, timeout=5, message="A follows VAL")
    loop.calculation.put("A+max(-D,min(D,(B-A)))+C*(RNDM-0.5)", wait=True)
    loop.scanning_rate.put(".1 second", wait=True)
    yield temperature
    loop.scanning_rate.put("Passive", wait=True)


def test_temperature_walks_to_setpoint_at_most_d_per_update(temperature):
    wait_for(lambda: abs(temperature.readback.get() - 20) < 0.1, timeout=5, message="at 20")
    events = []      # (server timestamp, value): ophyd may still deliver older monitors
    temperature.readback.subscribe(
        lambda value, timestamp, **kw: events.append((timestamp, value)), run=False)

    def since(t0):
        return [value for timestamp, value in events if timestamp > t0]

    t0 = time.time()
    wait_for(lambda: len(since(t0)) >= 5, timeout=5, message="scan updates")
    assert all(abs(v - 20) <= 0.05 + 1e-9 for v in since(t0))     # holds at 20 within noise

    t1 = time.time()
    status = temperature.move(25, wait=False, timeout=30)
    status.wait(30)
    assert status.success
    assert temperature.done.get() is True
    assert abs(temperature.readback.get() - 25) <= temperature.tolerance.get()
    start = [value for timestamp, value in events if timestamp <= t1][-1]
    walk = since(t1)
    assert len(walk) >= 5                       # 5 degrees at <= 1 (+ noise) per update
    steps = np.diff([start] + walk)
    assert np.all(np.abs(steps) <= 1.0 + 0.05 + 1e-9)   # D + C/2 (noise is C*(RNDM-0.5))
    # it settles: later updates stay within tolerance of the setpoint
    t2 = time.time()
    wait_for(lambda: len(since(t2)) >= 5, timeout=5, message="more updates")
    assert all(abs(v - 25) <= 0.2 for v in since(t2))


def test_a_move_is_not_finished_by_a_check_against_the_old_setpoint(temperature):
    """A readback update's in-position check (old setpoint, in position) that is
    still running when a new move starts must not finish the new move at once."""
    temperature.max_change.put(0.2, wait=True)     # 3 degrees take 15 updates (1.5 s)
    wait_for(lambda: temperature.done.get() and temperature.inposition, timeout=5,
             message="settled at 20")
    inside, release = threading.Event(), threading.Event()
    within_tolerance = temperature._within_tolerance

    def held_check(*args):     # hold the first monitor-thread check midway
        result = within_tolerance(*args)
        if threading.current_thread() is not threading.main_thread() and not inside.is_set():
            inside.set()
            release.wait(5)
        return result

    temperature._within_tolerance = held_check
    try:
        assert inside.wait(5), "no readback update checked the position"
        threading.Timer(0.5, release.set).start()
        status = temperature.move(23, wait=False, timeout=30)
        status.wait(30)
    finally:
        release.set()
        del temperature._within_tolerance
    assert status.success
    assert abs(temperature.readback.get() - 23) <= temperature.tolerance.get()


def test_a_late_monitor_of_an_older_setpoint_does_not_retarget_a_move(temperature):
    """The monitor of the setpoint written before a move, delivered only after the
    move began, must not become the target that move is done at."""
    temperature.max_change.put(0.2, wait=True)
    wait_for(lambda: temperature.done.get() and temperature.inposition, timeout=5,
             message="settled at 20")
    inside, release = threading.Event(), threading.Event()

    def hold_monitor_thread(**kwargs):
        if not inside.is_set():
            inside.set()
            release.wait(5)

    cid = temperature.readback.subscribe(hold_monitor_thread, run=False)
    try:
        assert inside.wait(5), "no readback update"
        temperature.setpoint.put(20, wait=True)    # its monitor waits behind the held thread
        status = temperature.move(23, wait=False, timeout=30)
        release.set()
        status.wait(30)
    finally:
        release.set()
        temperature.readback.unsubscribe(cid)
    assert status.success
    assert abs(temperature.readback.get() - 23) <= temperature.tolerance.get()


def test_a_move_that_never_settles_fails_within_its_bound(temperature):
    """Tolerance 0 with noise: the readback is never "there".  A move given no
    timeout fails once twice the scans it needs (D per .1 s scan) plus the margin
    have passed, instead of waiting for ever."""
    from ophyd.utils.errors import StatusTimeoutError
    wait_for(lambda: abs(temperature.readback.get() - 20) < 0.1, timeout=5, message="at 20")
    temperature.tolerance.put(0.0, wait=True)
    temperature.move_time_margin = 1.0
    bound = temperature.move_time_bound(21)
    assert bound == pytest.approx(2 * 2 * 0.1 + 1.0, abs=0.25)    # 1 degree at D=1: 2 scans
    t0 = time.monotonic()
    with pytest.raises(StatusTimeoutError):
        temperature.move(21, wait=True)
    took = time.monotonic() - t0
    assert bound - 0.1 < took < bound + 2.0
    assert abs(temperature.readback.get() - 21) < 0.2      # it went there, never within 0


def test_temperature_configuration_matches_the_training_instrument(temperature):
    assert temperature.readback.name == "temperature"
    assert set(temperature.configuration_attrs) >= {
        "calculation", "description", "max_change", "noise", "previous_value_pv",
        "scanning_rate", "tolerance"}
    assert temperature.previous_value_pv.get() == "gp:userCalc8.VAL"
    assert temperature.scanning_rate.get() == ".1 second"


def test_noisy_follows_m1_as_a_lorentzian(gp_ioc):
    m1 = EpicsMotor("gp:m1", name="m1")
    noisy = SwaitRecord("gp:userCalc1", name="noisy")
    m1.wait_for_connection(timeout=10)
    noisy.wait_for_connection(timeout=10)
    center, width, scale = 1.0, 0.2, 1000.0
    setup_lorentzian_swait(noisy, m1.user_readback, center=center, width=width, scale=scale,
                           noise=0.05)
    inav = EpicsSignal("gp:userCalc1.INAV", name="inav", string=True)
    wait_for(lambda: inav.get() == "PV OK", timeout=10, message="INAN connected to m1")
    assert noisy.scanning_rate.get(as_string=True) == "I/O Intr"

    def value_at(position):
        m1.move(position, wait=True, timeout=60)
        wait_for(lambda: abs(noisy.channels.A.input_value.get() - m1.user_readback.get()) < 1e-6,
                 timeout=5, message="A follows m1.RBV")
        return noisy.calculated_value.get()

    peak = value_at(center)
    half = value_at(center + width)
    far = value_at(center + 10 * width)
    assert 0.95 * scale <= peak <= 1.0 * scale
    assert 0.95 * scale / 2 <= half <= 1.0 * scale / 2
    assert far < 0.02 * scale
    noisy.scanning_rate.put("Passive", wait=True)


def test_the_done_check_reads_nothing_over_channel_access(temperature, monkeypatch):
    """The check runs at every readback update (10 Hz) on ophyd's one monitor
    thread: a Channel Access read there holds every device's monitors for a round
    trip, or for a whole timeout while the IOC does not answer."""
    from epics import ca
    wait_for(lambda: temperature.done.get() and temperature.inposition, timeout=5, message="settled")
    watched = {ca._chid_to_int(sig._read_pv.chid)
               for sig in (temperature.readback, temperature.setpoint, temperature.tolerance)}
    reads = []
    real_read = ca.get_with_metadata

    def counted(chid, *args, **kwargs):
        if ca._chid_to_int(chid) in watched and threading.current_thread() is not threading.main_thread():
            reads.append((threading.current_thread().name, ca.name(chid)))
        return real_read(chid, *args, **kwargs)

    monkeypatch.setattr(ca, "get_with_metadata", counted)
    # nor asks the tolerance signal: until ophyd has its metadata (which may come
    # after its first update) that get() is a Channel Access read
    tolerance_gets = []
    real_tolerance_get = temperature.tolerance.get

    def tolerance_get(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            tolerance_gets.append(threading.current_thread().name)
        return real_tolerance_get(*args, **kwargs)

    monkeypatch.setattr(temperature.tolerance, "get", tolerance_get)
    updates = []
    temperature.readback.subscribe(lambda value, **kw: updates.append(value), run=False)
    wait_for(lambda: len(updates) >= 5, timeout=5, message="readback updates")
    status = temperature.move(21, wait=False, timeout=30)
    status.wait(30)
    assert status.success and temperature.done.get()
    assert reads == [], f"the done-check read over Channel Access on {sorted(set(reads))}"
    assert tolerance_gets == [], f"the done-check called tolerance.get() on {sorted(set(tolerance_gets))}"
