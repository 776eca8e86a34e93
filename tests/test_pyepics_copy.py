"""pyepics' copy of a get reply as a byte copy (issue 7, ``loader/pyepics_copy.py``).

Run against EPICS's own softIoc.  They fail if a future pyepics stops copying its
replies through ``epics.ca.deepcopy`` (the swap would then do nothing), or if a
reply read through the swap differs from pyepics' own in any field.
"""
import copy
import ctypes
import inspect

from ophyd import EpicsSignalRO   # first: ophyd points pyepics at epicscorelibs' libca

from epics import ca
import pytest

from loader import pyepics_copy

# (PV, what pyepics is asked for): a double, an enum, a string and a short field,
# each in the TIME form (value, alarm, timestamp) and the CTRL form (limits, units...)
READS = [(pv, form) for pv in ("sx:ao21", "sx:mbbo", "sx:ao21.DESC", "sx:ao21.PREC")
         for form in ("time", "ctrl")]


@pytest.fixture
def swapped():
    pyepics_copy.install()
    yield
    pyepics_copy.uninstall()


def _read(pvname: str, form: str) -> dict:
    chid = ca.create_channel(pvname, connect=True)
    assert ca.connect_channel(chid, timeout=10), pvname
    native = ca.field_type(chid)
    ftype = ca.promote_fieldtype(native, use_time=form == "time", use_ctrl=form == "ctrl")
    return ca.get_with_metadata(chid, ftype=ftype, timeout=10)


def test_pyepics_still_copies_its_replies_through_the_swapped_name():
    assert "deepcopy(" in inspect.getsource(ca._onGetEvent)
    assert pyepics_copy._pyepics_deepcopy is copy.deepcopy


@pytest.mark.parametrize("pvname, form", READS)
def test_a_reply_reads_the_same_through_the_byte_copy(softioc, pvname, form, monkeypatch):
    was_installed = pyepics_copy.installed()     # (by an earlier load in this process)
    copies = []
    try:
        pyepics_copy.uninstall()
        own = _read(pvname, form)
        monkeypatch.setattr(ca, "deepcopy", lambda obj, memo=None: copies.append(obj)
                            or pyepics_copy.byte_copy(obj))
        swapped = _read(pvname, form)
    finally:
        monkeypatch.undo()
        (pyepics_copy.install if was_installed else pyepics_copy.uninstall)()
    assert copies, "pyepics no longer copies the reply through epics.ca.deepcopy"
    assert {k: repr(v) for k, v in swapped.items()} == {k: repr(v) for k, v in own.items()}   # (NaN limits)
    assert set(own) > {"value", "status", "severity"}
    if form == "time":
        assert own["timestamp"] > 0
    elif not pvname.endswith(".DESC"):      # (a string has no control fields)
        assert "upper_ctrl_limit" in own or "enum_strs" in own


def test_the_copy_is_its_own_memory_of_the_same_type():
    class Reply(ctypes.Structure):
        _fields_ = [("status", ctypes.c_short), ("value", ctypes.c_double)]
    reply, values = Reply(1, 2.5), (ctypes.c_double * 3)(1.0, 2.0, 3.0)
    kept = pyepics_copy.byte_copy([reply, values])
    reply.value, values[0] = -1.0, -1.0         # libca reuses its buffer after the callback
    assert [type(part) for part in kept] == [Reply, type(values)]
    assert (kept[0].status, kept[0].value, list(kept[1])) == (1, 2.5, [1.0, 2.0, 3.0])
    assert pyepics_copy.byte_copy([None, values])[0] is None
    assert pyepics_copy.byte_copy({"a": [1]}) == {"a": [1]}       # anything else: deepcopy


def test_a_signal_connects_with_its_metadata_through_the_swap(softioc, swapped):
    sig = EpicsSignalRO("sx:ao22", name="ao22_byte_copy")
    sig.wait_for_connection(timeout=10)
    assert sig.get() == 22.0
    assert (sig.precision, sig.metadata["units"], sig.limits) == (3, "mm", (-100.0, 100.0))
    sig.destroy()
