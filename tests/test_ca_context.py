"""pyepics' context look-up keeps the GIL (issue 7, ``loader/ca_context.py``).

Run against EPICS's own softIoc.  They fail if a future pyepics stops looking
``current_context`` up in ``epics.ca`` at call time (the swap would then be
silently bypassed), or if the swapped function stops answering as pyepics' own.
"""
import ctypes
import threading

from ophyd import EpicsSignal   # first: ophyd points pyepics at epicscorelibs' libca

import epics
import pytest
from epics import ca

from loader import ca_context


@pytest.fixture
def swapped():
    ca_context.install()
    yield
    ca_context.uninstall()


def _in_thread(function, thread_class=threading.Thread):
    result = []
    thread = thread_class(target=lambda: result.append(function()))
    thread.start()
    thread.join(10)
    return result[0]


def test_it_answers_as_pyepics_does_in_every_kind_of_thread(softioc, swapped):
    own = ca_context._pyepics_current_context
    assert ca.current_context() == own() is not None
    # a CAThread joins the initial context; a plain thread has none of its own
    assert _in_thread(ca.current_context, ca.CAThread) == _in_thread(own, ca.CAThread) == own()
    assert _in_thread(ca.current_context) == _in_thread(own) is None


def test_the_swapped_call_keeps_the_gil(softioc, swapped):
    ca.current_context()
    function = ca_context._without_gil_release
    assert function._flags_ & ctypes._FUNCFLAG_PYTHONAPI, "called through a CDLL: the GIL is released"
    assert not ca.libca.ca_current_context._flags_ & ctypes._FUNCFLAG_PYTHONAPI


def test_pyepics_and_ophyd_go_through_the_swap(softioc, swapped, monkeypatch):
    calls = []
    real = ca_context.current_context
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


def test_uninstall_restores_pyepics_function():
    ca_context.install()
    assert ca_context.installed() and ca.current_context is ca_context.current_context
    ca_context.uninstall()
    assert not ca_context.installed()
    assert ca.current_context is ca_context._pyepics_current_context
