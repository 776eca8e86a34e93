"""calcout records of the simulated gp: IOC, over real Channel Access."""
from apstools.synApps import CalcoutRecord, UserCalcoutDevice
from ophyd import EpicsSignal

from ca_helpers import declared_pvs, unconnected, wait_for


def calcout(n: int) -> CalcoutRecord:
    record = CalcoutRecord(f"gp:userCalcOut{n}", name=f"calcout{n}")
    record.wait_for_connection(timeout=10)
    record.reset()
    return record


def test_every_declared_pv_connects(gp_ioc):
    names = declared_pvs(UserCalcoutDevice("gp:", name="calcouts")) | declared_pvs(
        CalcoutRecord("gp:userCalcOut1", name="calcout1"))
    assert len(names) > 500
    assert unconnected(names, timeout=15) == []


def test_menus_are_the_calcout_records(gp_ioc):
    record = calcout(1)
    assert record.output_execute_option.enum_strs[:2] == ("Every Time", "On Change")
    assert record.output_data_option.enum_strs == ("Use CALC", "Use OCAL")
    assert record.channels.A.input_pv_valid.enum_strs == (
        "Ext PV NC", "Ext PV OK", "Local PV", "Constant")
    assert record.channels.A.input_pv_valid.get(as_string=True) == "Constant"
    assert EpicsSignal("gp:userCalcOutEnable", name="e").get(as_string=True) == "Enable"


def test_calcout_writes_its_output_link(gp_ioc):
    source, target = calcout(2), calcout(3)
    source.calculation.put("A+B", wait=True)
    source.output_pv.put("gp:userCalcOut3.L", wait=True)
    wait_for(lambda: source.output_pv_status.get(as_string=True) == "Local PV", timeout=5,
             message="OUT connected")
    source.channels.A.input_value.put(2, wait=True)
    source.channels.B.input_value.put(40, wait=True)
    assert source.calculated_value.get(use_monitor=False) == 42
    wait_for(lambda: target.channels.L.input_value.get() == 42, timeout=5,
             message="OUT wrote 42 into userCalcOut3.L")


def test_ocal_and_on_change_output(gp_ioc):
    source, target = calcout(4), calcout(5)
    source.calculation.put("A", wait=True)
    source.output_calculation.put("A*10", wait=True)
    source.output_data_option.put("Use OCAL", wait=True)
    source.output_execute_option.put("On Change", wait=True)
    source.output_pv.put("gp:userCalcOut5.K", wait=True)
    wait_for(lambda: source.output_pv_status.get(as_string=True) == "Local PV", timeout=5,
             message="OUT connected")
    source.channels.A.input_value.put(3, wait=True)
    wait_for(lambda: target.channels.K.input_value.get() == 30, timeout=5, message="K = 30")
    assert source.output_value.get(use_monitor=False) == 30


def test_input_link_follows_another_record(gp_ioc):
    source, follower = calcout(6), calcout(7)
    follower.calculation.put("A*2", wait=True)
    follower.channels.A.input_pv.put("gp:userCalcOut6.VAL CP", wait=True)
    wait_for(lambda: follower.channels.A.input_pv_valid.get(as_string=True) == "Local PV",
             timeout=5, message="INPA connected")
    source.calculation.put("21", wait=True)
    source.process_record.put(1, wait=True)
    wait_for(lambda: follower.calculated_value.get() == 42, timeout=5, message="CP processed")


def test_bad_expression_marks_calc_invalid(gp_ioc):
    record = calcout(8)
    record.calculation.put("A+*B", wait=True)
    assert record.calculation_valid.get(use_monitor=False) != 0
    record.calculation.put("A+B", wait=True)
    assert record.calculation_valid.get(use_monitor=False) == 0


def test_output_link_to_a_string_field(gp_ioc):
    record = calcout(9)
    record.calculation.put("A/4", wait=True)
    record.output_pv.put("gp:userCalcOut10.DESC", wait=True)
    wait_for(lambda: record.output_pv_status.get(as_string=True) == "Local PV", timeout=5,
             message="OUT connected")
    record.channels.A.input_value.put(1, wait=True)
    desc = EpicsSignal("gp:userCalcOut10.DESC", name="desc", string=True)
    wait_for(lambda: desc.get() == "0.25", timeout=5, message="DESC = 0.25")
