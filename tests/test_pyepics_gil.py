"""pyepics calls that gave the GIL away for nothing (issue 7, ``loader/pyepics_gil.py``).

Run against EPICS's own softIoc.  They fail if a future pyepics stops looking
``current_context`` or ``poll`` up in ``epics.ca``, or libca's functions up on
``epics.ca.libca``, at call time (the swaps would then be silently bypassed), or
if the swapped functions stop answering as pyepics' own.
"""
import ctypes
import json
import os
import subprocess
import sys
import threading

from ophyd import EpicsSignal   # first: ophyd points pyepics at epicscorelibs' libca

import epics
import pytest
from epics import ca

from loader import pyepics_gil

from ca_helpers import wait_for


@pytest.fixture
def swapped():
    pyepics_gil.install()
    yield
    pyepics_gil.uninstall()


def _keeps_gil(function) -> bool:
    return bool(function._flags_ & ctypes._FUNCFLAG_PYTHONAPI)


def _in_thread(function, thread_class=threading.Thread):
    result = []
    thread = thread_class(target=lambda: result.append(function()))
    thread.start()
    thread.join(10)
    return result[0]


def test_it_answers_as_pyepics_does_in_every_kind_of_thread(softioc, swapped):
    own = pyepics_gil._pyepics_current_context
    assert ca.current_context() == own() is not None
    # a CAThread joins the initial context; a plain thread has none of its own
    assert _in_thread(ca.current_context, ca.CAThread) == _in_thread(own, ca.CAThread) == own()
    assert _in_thread(ca.current_context) == _in_thread(own) is None


def test_the_swapped_call_keeps_the_gil(softioc, swapped):
    ca.current_context()
    assert _keeps_gil(pyepics_gil._without_gil_release), "called through a CDLL: the GIL is released"
    assert not _keeps_gil(ca.libca.ca_current_context)


def test_pyepics_and_ophyd_go_through_the_swap(softioc, swapped, monkeypatch):
    calls = []
    real = pyepics_gil.current_context
    monkeypatch.setattr(ca, "current_context", lambda: calls.append(1) or real())
    signal = EpicsSignal("sx:ao36", name="ao36")
    signal.wait_for_connection(timeout=10)
    assert signal.get() == 36.0
    assert calls, "ophyd/pyepics no longer call epics.ca.current_context: the swap does nothing"
    pv = epics.PV("sx:ao37")
    assert pv.wait_for_connection(timeout=10)
    before = len(calls)
    assert pv.get() == 37.0
    assert len(calls) > before, "PV methods no longer check the context through epics.ca"
    signal.destroy()
    pv.disconnect()


def test_poll_is_skipped_only_where_libca_refuses_it(softioc, swapped, monkeypatch):
    monkeypatch.setattr(pyepics_gil, "_refusing_threads", {})    # as if libca had just started
    polled = []
    real = pyepics_gil._pyepics_poll
    monkeypatch.setattr(pyepics_gil, "_pyepics_poll",
                        lambda *a: polled.append(threading.get_ident()) or real(*a))
    statuses = []
    handler_threads = set()

    def on_connect(pvname=None, conn=None, **kwargs):
        if conn:
            handler_threads.add(threading.get_ident())
            statuses.extend([ca.poll(), ca.poll()])

    pv = epics.PV("sx:ao38", connection_callback=on_connect)
    assert pv.wait_for_connection(timeout=10)
    wait_for(lambda: len(statuses) >= 2, timeout=10, message="the connection handler")
    # pyepics' own connection handler polled first: libca refused it there
    assert set(statuses) == {pyepics_gil.ECA_EVDISALLOW}
    assert handler_threads and threading.get_ident() not in handler_threads
    assert polled.count(next(iter(handler_threads))) == 1, "asked libca again after its refusal"
    # the same thread id reused by a new Python thread is not taken for libca's
    pyepics_gil._refusing_threads[threading.get_ident()] = object()
    before = len(polled)
    assert ca.poll() == 1 and len(polled) == before + 1     # ECA_NORMAL: really polled
    pyepics_gil._refusing_threads.pop(threading.get_ident())
    pv.disconnect()


#: libca calls that take its callback lock or may wait for the network: never swapped
MUST_RELEASE_THE_GIL = ("ca_clear_channel", "ca_clear_subscription", "ca_create_subscription",
                        "ca_array_get_callback", "ca_array_put_callback", "ca_array_put",
                        "ca_pend_event", "ca_pend_io", "ca_context_destroy")


def test_the_primary_lock_calls_keep_the_gil_and_no_other(softioc, swapped):
    for name in pyepics_gil.PRIMARY_LOCK_ONLY:
        assert _keeps_gil(getattr(ca.libca, name)), name
    for name in MUST_RELEASE_THE_GIL:
        assert not _keeps_gil(getattr(ca.libca, name)), name


def test_pyepics_makes_these_calls_through_libca_at_call_time(softioc, swapped, monkeypatch):
    """A new PV, its connection and its metadata go through the swapped calls, and
    answer as before: a pyepics that bound them elsewhere would bypass the swap."""
    calls = []
    for name in pyepics_gil.PRIMARY_LOCK_ONLY:
        function = getattr(ca.libca, name)
        monkeypatch.setattr(ca.libca, name, lambda *a, _f=function, _n=name: calls.append(_n) or _f(*a))
    pv = epics.PV("sx:ao39", form="ctrl")
    assert pv.wait_for_connection(timeout=10)
    assert pv.get() == 39.0 and pv.units == "mm" and pv.precision == 3 and pv.upper_ctrl_limit == 100
    assert pv.read_access and pv.write_access and pv.count == 1 and pv.type == "ctrl_double"
    assert pv.host.endswith(f":{softioc.port}") and ca.name(pv.chid) == "sx:ao39"
    assert ca.state(pv.chid) == 2     # cs_conn
    assert {"ca_create_channel", "ca_replace_access_rights_event", "ca_field_type",
            "ca_element_count", "ca_host_name", "ca_read_access", "ca_write_access",
            "ca_name", "ca_state"} <= set(calls)
    pv.disconnect()


STRESS = r"""
import json, sys, threading, time
from ophyd import EpicsSignal   # ophyd points pyepics at epicscorelibs' libca
import epics
from epics import ca
from loader import pyepics_gil
pyepics_gil.install()
fields = ("VAL", "DESC", "EGU", "PREC", "HOPR", "LOPR", "DRVH", "DRVL", "SCAN", "NAME")
names = [f"sx:ao{i}.{f}" for i in range(50) for f in fields]
connected, lock = set(), threading.Lock()

def on_connect(pvname=None, conn=None, pv=None, **kw):
    # on libca's receive thread, which holds libca's callback lock: Python work
    # that keeps the GIL a while, and more of the swapped calls
    if conn:
        ca.field_type(pv.chid), ca.element_count(pv.chid), ca.read_access(pv.chid)
        sum(range(3000))
        with lock:
            connected.add(pvname)

pvs = []
def build(chunk):
    for name in chunk:
        pvs.append(epics.PV(name, connection_callback=on_connect, auto_monitor=True))

def churn():   # channels cleared (libca's callback lock) while others are created
    for i in range(200):
        pv = epics.PV(f"sx:ao{i % 50}.HOPR", auto_monitor=True)
        pv.wait_for_connection(timeout=5)
        pv.disconnect()

t0 = time.monotonic()
threads = [threading.Thread(target=build, args=(names[i::4],)) for i in range(4)]
threads.append(threading.Thread(target=churn))
for t in threads:
    t.start()
for t in threads:
    t.join()
deadline = time.monotonic() + 30
while len(connected) < len(names) and time.monotonic() < deadline:
    time.sleep(0.05)
values = {pv.pvname: pv.get(timeout=5) for pv in pvs if pv.pvname.endswith(".VAL")}
print(json.dumps({"connected": len(connected), "wanted": len(names),
                  "values": values, "seconds": time.monotonic() - t0}))
"""


def test_channels_made_from_many_threads_under_busy_callbacks_never_hang(softioc):
    """The deadlock the swap must never cause: a GIL-holding call waiting for libca's
    lock while a libca thread holding it waits for the GIL.  Five threads create and
    clear 700 channels while connection callbacks on libca's thread run Python code
    that makes the same calls; it must finish, bounded, with everything connected."""
    out = subprocess.run([sys.executable, "-c", STRESS], capture_output=True, text=True,
                         timeout=90, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["connected"] == result["wanted"] == 500
    # the values read there are the IOC's (other tests write some of these records)
    assert result["values"] == {f"sx:ao{i}.VAL": epics.caget(f"sx:ao{i}.VAL", timeout=10)
                                for i in range(50)}


def test_uninstall_restores_pyepics_functions():
    pyepics_gil.install()
    assert pyepics_gil.installed() and ca.current_context is pyepics_gil.current_context
    assert ca.poll is pyepics_gil.poll
    assert all(_keeps_gil(getattr(ca.libca, name)) for name in pyepics_gil.PRIMARY_LOCK_ONLY)
    pyepics_gil.uninstall()
    assert not pyepics_gil.installed()
    assert ca.current_context is pyepics_gil._pyepics_current_context
    assert ca.poll is pyepics_gil._pyepics_poll
    assert not any(_keeps_gil(getattr(ca.libca, name)) for name in pyepics_gil.PRIMARY_LOCK_ONLY)
