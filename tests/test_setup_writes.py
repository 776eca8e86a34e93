"""How setup actions write fields (``loader.setups._common.put_all``), against the
real gp: and ad: IOCs: several fields checked, written and confirmed together."""
from __future__ import annotations

import time

import pytest
from apstools.synApps import SwaitRecord
from ophyd import EpicsSignal

from ca_helpers import ca_value, wait_for

from loader.setups._common import SetupValueError, put, put_all, read_together


def test_fields_written_together_hold_and_the_record_runs_them(gp_ioc):
    calc = SwaitRecord("gp:userCalc6", name="calc6")
    calc.wait_for_connection(timeout=10)
    calc.reset()
    try:
        put_all([(calc.channels.A.input_value, 1.5),
                 (calc.channels.B.input_value, 4.0),
                 (calc.calculation, "A*B"),
                 (calc.scanning_rate, ".1 second")])     # a menu field, by its string
        assert ca_value("gp:userCalc6.A") == 1.5
        assert ca_value("gp:userCalc6.B") == 4.0
        assert ca_value("gp:userCalc6.CALC") == "A*B"
        assert calc.scanning_rate.get(as_string=True) == ".1 second"
        wait_for(lambda: ca_value("gp:userCalc6.VAL") == 6.0, 5, message="the record to compute A*B")
    finally:
        calc.reset()


def test_read_together_gives_what_ophyd_gets(gp_ioc, ad_ioc):
    from loader.devices.area_detector import SimDetectorV34
    calc = SwaitRecord("gp:userCalc7", name="calc7")
    cam = SimDetectorV34("ad:", name="det").cam
    signals = [calc.calculation, calc.scanning_rate, calc.channels.A.input_value,
               cam.manufacturer, cam.sim_mode, cam.gain]      # text, menu, numbers; an _RBV
    for signal in signals:
        signal.wait_for_connection(timeout=10)
    assert read_together(signals, 5) == [signal.get() for signal in signals]


def test_a_readback_trailing_its_put_is_waited_for(ad_ioc):
    from loader.devices.area_detector import SimDetectorV34
    cam = SimDetectorV34("ad:", name="det").cam
    cam.gain.wait_for_connection(timeout=10)
    put_all([(cam.gain, 2.5), (cam.sim_mode, "Peaks")])
    assert ca_value("ad:cam1:Gain_RBV") == 2.5
    assert cam.sim_mode.get(as_string=True) == "Peaks"


def test_a_value_the_ioc_does_not_keep_is_reported_within_the_bound(gp_ioc):
    mres = EpicsSignal("gp:m8.MRES", name="m8_mres")     # the motor record refuses MRES 0
    mres.wait_for_connection(timeout=10)
    before = mres.get()
    assert before != 0
    t0 = time.monotonic()
    with pytest.raises(SetupValueError, match=rf"gp:m8.MRES: wrote 0, the IOC holds {before!r}"):
        put(mres, 0, timeout=1.0)
    assert time.monotonic() - t0 < 3.0
    assert ca_value("gp:m8.MRES") == before


@pytest.mark.parametrize("bad", ["text for a number", "beyond the motor's limits"])
def test_nothing_is_written_when_one_value_does_not_fit(gp_ioc, bad):
    calc = SwaitRecord("gp:userCalc6", name="calc6")
    calc.wait_for_connection(timeout=10)
    calc.reset()
    if bad == "text for a number":
        write, expected = (calc.channels.C.input_value, "warm"), "gp:userCalc6.C is numeric"
    else:
        from ophyd import EpicsMotor
        motor = EpicsMotor("gp:m7", name="m7")
        motor.wait_for_connection(timeout=10)
        write, expected = (motor.user_setpoint, motor.limits[1] + 10), "gp:m7.VAL: .*nothing written"
    with pytest.raises(SetupValueError, match=expected):
        put_all([(calc.channels.A.input_value, 7.0), write])
    assert ca_value("gp:userCalc6.A") == 0.0
