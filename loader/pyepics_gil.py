"""pyepics calls that gave the GIL away for nothing (issue 7).

ctypes releases the GIL around every call into libca.  While a load builds
thousands of signals, several threads want the GIL (constructors, libca's
receive thread running callbacks, ophyd's dispatcher, the metadata batcher), so
each such call became a hand-off: a context switch and a wait to get the GIL
back.  The most frequent of them need neither:

* ``ca.current_context()`` runs before nearly every PV operation (each ``PV``
  method through ``_ensure_context``, every ``get_cache``).  libca's
  ``ca_current_context`` only reads a thread-private variable (EPICS base,
  ``ca/client/access.cpp``): no lock, never blocks.  :func:`current_context`
  calls the same symbol through ``ctypes.PyDLL``, which keeps the GIL.  No
  other libca call is changed: the rest take libca's locks, and holding the GIL
  there could deadlock with a callback thread.
* ``ca.poll()`` runs at the start of every PV's connection handler, on libca's
  receive thread, where libca refuses it (``ECA_EVDISALLOW``: no pend calls
  inside a callback) after four calls and two exceptions.  That thread handles
  every reply in turn, so its time is the connection rate.  :func:`poll`
  remembers the threads libca refused and returns the same status to them at
  once; elsewhere it is pyepics' ``poll``.
* The same opening ``poll`` when the handler runs in the thread that made the
  PV (its channel was already connected: a second signal on a PV, every signal
  of a ``load: lazy`` device on first use).  There libca takes it: ~0.3-0.7 ms
  of sleeping in ``ca_pend_event`` per signal, for nothing, since pyepics'
  callbacks are preemptive (libca delivers them on its own threads) and the
  handler's own requests are flushed by later polls, as before.  The handler
  (``loader.bulk_metadata.BulkMetadataPV``) runs inside
  :func:`opening_poll_skipped`, and :func:`poll` returns at once to that one call.

* The two polls of ``ca.create_subscription`` when a monitor is made in a thread
  libca lets poll (a signal built on a connected channel, ophyd subscribing from
  its dispatcher): each slept in ``ca_pend_event`` and flushed libca's queue,
  waking its send thread, once per monitor.  ``BulkMetadataPV`` subscribes inside
  :func:`polls_skipped` and has the batcher flush once for all the monitors made
  meanwhile (``MetadataBatcher.flush_soon``).

And one sleep that was only there to give the GIL away: pyepics' connection
handler calls ``time.sleep(0)`` before each Python callback of a channel
(pyepics#171, whose maintainer doubts it is needed), on libca's receive thread,
which then waits for the GIL to come back while every reply behind it waits
too.  :func:`run_connection_callbacks` runs the same callbacks without it.
Python's own switch interval still hands the GIL round.  Each such sleep and
each pend above is a ``clock_nanosleep``; on this project's CI kind of machine
(a VM) a load of 300 motors made ~6,600 of them, ~0.14 s of CPU on the receive
thread alone (``perf``); without them the load took 14 % less (median of 20
interleaved pairs, BENCHMARKS.md).

pyepics' functions and ``epics.pv`` look ``current_context`` and ``poll`` up in
``epics.ca`` at call time, and the connection handler is a method of
``ca._CacheItem``, so :func:`install` reaches them; ``tests/test_pyepics_gil.py``
fails if a future pyepics stops doing so.
"""
from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from epics import ca

ECA_NORMAL = 1
ECA_EVDISALLOW = 210     # caerr.h: "Request inappropriate within subscription (monitor) update callback"

_without_gil_release: Callable[[], int | None] | None = None
_pyepics_current_context = ca.current_context
_pyepics_poll = ca.poll
# (a pyepics without it keeps its own: the loads work, tests/test_pyepics_gil.py says so)
_pyepics_run_connection_callbacks = getattr(getattr(ca, "_CacheItem", None), "run_connection_callbacks", None)
# libca's callback threads, by ident; the thread object tells a later thread that
# reuses the ident (a circuit's threads end when its IOC goes away) from the original
_refusing_threads: dict[int, threading.Thread] = {}
_opening_poll = threading.local()    # .skip: the thread's next poll is a connection handler's first
_skipping = threading.local()        # .depth: inside polls_skipped


def current_context() -> int | None:
    """The calling thread's CA context (``None`` when it has none), as pyepics'
    own function returns it, but the GIL stays held."""
    global _without_gil_release
    libca = ca.libca
    if libca is None:                      # pyepics' withCA: start libca first
        ca.initialize_libca()
        libca = ca.libca
    elif libca is ca._LIBCA_FINALIZED:     # pyepics' withCA: interpreter exiting
        return None
    if _without_gil_release is None:
        function = ctypes.PyDLL(libca._name).ca_current_context
        function.restype = ctypes.c_void_p
        function.argtypes = []
        _without_gil_release = function
    return _without_gil_release()


def poll(evt: float = 1.e-5, iot: float = 1.0) -> int | None:
    """pyepics' ``poll``, except in a thread where libca refused it before, as a
    connection handler's opening call (see :func:`opening_poll_skipped`) and
    inside :func:`polls_skipped`."""
    if getattr(_opening_poll, "skip", False):
        _opening_poll.skip = False
        return ECA_NORMAL
    if getattr(_skipping, "depth", 0):
        return ECA_NORMAL
    thread = threading.current_thread()
    if _refusing_threads.get(thread.ident) is thread:
        return ECA_EVDISALLOW
    status = _pyepics_poll(evt, iot)
    if status == ECA_EVDISALLOW:
        _refusing_threads[thread.ident] = thread
    return status


@contextmanager
def opening_poll_skipped() -> Iterator[None]:
    """Around pyepics' connection handler (``PV.__on_connect``) of a connected
    channel: its first ``poll``, at the top, returns at once; any later one (in a
    callback it runs, a blocking get) is pyepics' own."""
    _opening_poll.skip = True
    try:
        yield
    finally:
        _opening_poll.skip = False


@contextmanager
def polls_skipped() -> Iterator[None]:
    """Every ``poll`` of the calling thread returns at once inside the block: for
    requests whose flush someone else makes (see the module's docstring)."""
    _skipping.depth = getattr(_skipping, "depth", 0) + 1
    try:
        yield
    finally:
        _skipping.depth -= 1


def run_connection_callbacks(self, conn: bool, timestamp: float) -> None:
    """``ca._CacheItem.run_connection_callbacks``: the channel's entry records the new
    state under its lock, then each callback (a PV's connection handler) is called
    with the name, the channel id and that state; no sleep before each."""
    with self.lock:
        self.conn, self.ts, self.failures = conn, timestamp, 0
    chid = self.chid_int
    for callback in list(self.callbacks):
        if callable(callback):
            callback(pvname=self.pvname, chid=chid, conn=self.conn)


def install() -> None:
    """Make pyepics (and so ophyd) use :func:`current_context`, :func:`poll` and
    :func:`run_connection_callbacks`."""
    ca.current_context = current_context
    ca.poll = poll
    if _pyepics_run_connection_callbacks is not None:
        ca._CacheItem.run_connection_callbacks = run_connection_callbacks


def uninstall() -> None:
    """Back to pyepics' own functions."""
    ca.current_context = _pyepics_current_context
    ca.poll = _pyepics_poll
    if _pyepics_run_connection_callbacks is not None:
        ca._CacheItem.run_connection_callbacks = _pyepics_run_connection_callbacks


def installed() -> bool:
    return (ca.current_context is current_context and ca.poll is poll
            and (_pyepics_run_connection_callbacks is None
                 or ca._CacheItem.run_connection_callbacks is run_connection_callbacks))
