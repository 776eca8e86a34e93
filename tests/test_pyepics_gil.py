"""pyepics calls that gave the GIL away for nothing (issue 7, ``loader/pyepics_gil.py``).

Run against EPICS's own softIoc.  They fail if a future pyepics stops looking
``current_context`` or ``poll`` up in ``epics.ca`` at call time (the swaps would
then be silently bypassed), or if the swapped functions stop answering as
pyepics' own.
"""
import ctypes
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
    function = pyepics_gil._without_gil_release
    assert function._flags_ & ctypes._FUNCFLAG_PYTHONAPI, "called through a CDLL: the GIL is released"
    assert not ca.libca.ca_current_context._flags_ & ctypes._FUNCFLAG_PYTHONAPI


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


def test_uninstall_restores_pyepics_functions():
    pyepics_gil.install()
    assert pyepics_gil.installed() and ca.current_context is pyepics_gil.current_context
    assert ca.poll is pyepics_gil.poll
    pyepics_gil.uninstall()
    assert not pyepics_gil.installed()
    assert ca.current_context is pyepics_gil._pyepics_current_context
    assert ca.poll is pyepics_gil._pyepics_poll
    assert ca._CacheItem.run_connection_callbacks is pyepics_gil._pyepics_run_connection_callbacks


def test_a_signal_on_a_connected_channel_is_made_without_libcas_pend(softioc, swapped, monkeypatch):
    """pyepics' connection handler opens with a ``poll``; run in the thread that makes
    the PV (its channel already connected: every lazy signal's first use, its channel
    opened bare at load) it slept in libca for nothing.  Fails if ``BulkMetadataPV``
    stops skipping it, or if a future pyepics handler stops being the one our
    subclass wraps."""
    from loader import bulk_metadata
    bulk_metadata.install()
    try:
        chid = ca.create_channel("sx:ao50", connect=True)      # as loader.lazy_signals opens it
        assert ca.isConnected(chid)
        # pyepics marks its entry connected from libca's thread, a moment after libca
        wait_for(lambda: ca.get_cache("sx:ao50").conn, timeout=10, message="pyepics' connection handler")
        polled = []
        real = pyepics_gil._pyepics_poll
        monkeypatch.setattr(pyepics_gil, "_pyepics_poll",
                            lambda *a: polled.append(threading.get_ident()) or real(*a))
        handled = []
        monkeypatch.setattr(pyepics_gil, "opening_poll_skipped", _counting(pyepics_gil.opening_poll_skipped, handled))
        monkeypatch.setattr(bulk_metadata, "opening_poll_skipped", pyepics_gil.opening_poll_skipped)
        signal = EpicsSignal("sx:ao50", name="ao50")      # pyepics' cached, connected channel
        assert isinstance(signal._read_pv, bulk_metadata.BulkMetadataPV), "a PV made before: not a test"
        assert handled == [threading.get_ident()], "the handler did not run here, around the skip"
        assert threading.get_ident() not in polled, "libca was polled while the signal was made"
        signal.wait_for_connection(timeout=10)
        assert signal.get() == 50.0 and signal.precision is not None    # its metadata came too
        assert ca.poll() == 1 and threading.get_ident() in polled     # later polls are pyepics' own
        signal.destroy()
    finally:
        bulk_metadata.uninstall()


def _counting(context_manager, calls):
    from contextlib import contextmanager

    @contextmanager
    def counted():
        calls.append(threading.get_ident())
        with context_manager():
            yield
    return counted


def _sleeps_in_connection_handlers(monkeypatch, names):
    """Connect ``names`` with a Python callback each; the ``time.sleep`` calls made on
    the way in pyepics' connection handler (``_CacheItem.run_connection_callbacks``),
    and the names each callback was told of."""
    import sys
    import time
    sleeps, told = [], []
    real_sleep = time.sleep

    def counting_sleep(seconds):
        if any(sys._getframe(depth).f_code.co_name == "run_connection_callbacks" for depth in (1, 2)):
            sleeps.append(seconds)
        return real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", counting_sleep)
    pvs = [epics.PV(name, connection_callback=lambda pvname=None, conn=None, **kw: conn and told.append(pvname))
           for name in names]
    assert all(pv.wait_for_connection(timeout=10) for pv in pvs)
    wait_for(lambda: len(told) >= len(names), timeout=10, message="the connection callbacks")
    assert all(ca.get_cache(name).conn for name in names)     # the entries were marked, as pyepics does
    monkeypatch.setattr(time, "sleep", real_sleep)
    for pv in pvs:
        pv.disconnect()
    return sleeps, sorted(told)


def test_connection_callbacks_run_without_a_sleep_before_each(softioc, monkeypatch):
    """pyepics slept (``time.sleep(0)``: a system call, and the GIL given away) on
    libca's receive thread before every connection callback.  Fails if the swap is
    not installed or stops being the method pyepics' connection event calls."""
    assert pyepics_gil._pyepics_run_connection_callbacks is not None, \
        "pyepics no longer has ca._CacheItem.run_connection_callbacks: the swap is skipped"
    names = [f"sx:ao{i}" for i in range(57, 63)]
    pyepics_gil.uninstall()
    sleeps, told = _sleeps_in_connection_handlers(monkeypatch, names[:3])
    assert sleeps and told == names[:3], "pyepics no longer sleeps there: nothing to skip, drop the swap"
    pyepics_gil.install()
    try:
        sleeps, told = _sleeps_in_connection_handlers(monkeypatch, names[3:])
        assert told == names[3:], "a connection callback was not run"
        assert sleeps == []
    finally:
        pyepics_gil.uninstall()


def test_a_monitor_is_made_without_libcas_pend_and_still_sent(softioc, swapped, monkeypatch):
    """A monitored signal built on a connected channel subscribes in the building
    thread; pyepics' two polls around ``ca_create_subscription`` slept in libca
    (``ca_pend_event``) and flushed, per monitor.  Now neither: the batcher's flush
    sends the subscription, whose first update still arrives.  Fails if the polls
    come back, or if the subscription is left unsent (the signal never connects)."""
    from ophyd import EpicsSignalRO

    from loader import bulk_metadata
    bulk_metadata.install()
    try:
        chid = ca.create_channel("sx:ao63", connect=True)
        wait_for(lambda: ca.get_cache("sx:ao63").conn, timeout=10, message="pyepics' connection handler")
        pends = []
        real_pend = ca.pend_event
        monkeypatch.setattr(ca, "pend_event", lambda *a: pends.append(threading.get_ident()) or real_pend(*a))
        signal = EpicsSignalRO("sx:ao63", name="ao63", auto_monitor=True)
        assert signal._read_pv._monref is not None, "not subscribed while it was built: not a test"
        assert threading.get_ident() not in pends, "libca was pended while the monitor was made"
        signal.wait_for_connection(timeout=10)
        assert signal.get() == 63.0 and signal.timestamp > 0     # the monitor's first update came
        assert ca.isConnected(chid)
        monkeypatch.setattr(ca, "pend_event", real_pend)
        signal.destroy()
    finally:
        bulk_metadata.uninstall()
