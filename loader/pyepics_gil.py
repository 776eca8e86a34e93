"""pyepics calls that gave the GIL away for nothing (issue 7).

ctypes releases the GIL around every call into libca.  While a load builds
thousands of signals, several threads want the GIL (constructors, libca's
receive thread running callbacks, ophyd's dispatcher, the metadata batcher), so
each such call became a hand-off: a context switch and a wait to get the GIL
back.  The most frequent calls need neither:

* ``ca.current_context()`` runs before nearly every PV operation (each ``PV``
  method through ``_ensure_context``, every ``get_cache``).  libca's
  ``ca_current_context`` only reads a thread-private variable (EPICS base,
  ``ca/client/access.cpp``): no lock, never blocks.  :func:`current_context`
  calls the same symbol through ``ctypes.PyDLL``, which keeps the GIL.
* The calls of :data:`PRIMARY_LOCK_ONLY`, which every new PV makes in its
  constructor and in its connection handler (creating its channel, reading its
  type, count, host and access rights), go through ``PyDLL`` too.  In
  EPICS base (``ca/client/oldChannelNotify.cpp``, ``access.cpp``) each takes
  libca's primary lock only, for a few lines of C, and libca never calls user
  code with that lock held (every callback runs after ``epicsGuardRelease``):
  no thread can hold it while it waits for the GIL, so waiting for it with the
  GIL held cannot deadlock.  Calls that take the callback lock (clearing a
  channel or a subscription) or can wait for the network (gets, puts and new
  subscriptions wait while the send queue is backed up) keep releasing the GIL.
  Constructors spent most of the build phase waiting to get the GIL back after
  these calls: in a training load, ``calcouts`` (931 signals) took 0.81 s to
  build for 0.14 s of CPU (0.23-0.43 s with this change; the load 2.48 -> 2.06 s).
* ``ca.poll()`` runs at the start of every PV's connection handler, on libca's
  receive thread, where libca refuses it (``ECA_EVDISALLOW``: no pend calls
  inside a callback) after four calls and two exceptions.  That thread handles
  every reply in turn, so its time is the connection rate.  :func:`poll`
  remembers the threads libca refused and returns the same status to them at
  once; elsewhere it is pyepics' ``poll``.

pyepics' functions and ``epics.pv`` look both names up in ``epics.ca``, and the
libca functions on ``epics.ca.libca``, at call time, so :func:`install` reaches
them; ``tests/test_pyepics_gil.py`` fails if a future pyepics stops doing so.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable

from epics import ca

ECA_EVDISALLOW = 210     # caerr.h: "Request inappropriate within subscription (monitor) update callback"

#: libca calls that take libca's primary lock only, never the callback lock, and
#: never wait for the network: made with the GIL held (see the module's docstring)
PRIMARY_LOCK_ONLY = ("ca_create_channel", "ca_replace_access_rights_event", "ca_field_type",
                     "ca_element_count", "ca_host_name", "ca_name", "ca_state",
                     "ca_read_access", "ca_write_access")

_without_gil_release: Callable[[], int | None] | None = None
_swapped_libca: ctypes.CDLL | None = None          # the libca whose calls were swapped
_pyepics_calls: dict[str, object] = {}              # their functions as pyepics made them
_pyepics_current_context = ca.current_context
_pyepics_poll = ca.poll
# libca's callback threads, by ident; the thread object tells a later thread that
# reuses the ident (a circuit's threads end when its IOC goes away) from the original
_refusing_threads: dict[int, threading.Thread] = {}


def _started_libca():
    """pyepics' libca (started first if need be, as pyepics' ``withCA`` does), or
    ``ca._LIBCA_FINALIZED`` while the interpreter exits."""
    if ca.libca is None:
        ca.initialize_libca()
    return ca.libca


def _keeping_gil(libca: ctypes.CDLL, name: str, restype: Any, argtypes: Any):
    """libca's function ``name`` called through ``ctypes.PyDLL`` on the same library
    handle (not loaded again): the GIL stays held."""
    function = getattr(ctypes.PyDLL(libca._name, handle=libca._handle), name)
    function.restype, function.argtypes = restype, argtypes
    return function


def current_context() -> int | None:
    """The calling thread's CA context (``None`` when it has none), as pyepics'
    own function returns it, but the GIL stays held."""
    global _without_gil_release
    libca = _started_libca()
    if libca is ca._LIBCA_FINALIZED:     # pyepics' withCA: interpreter exiting
        return None
    if _without_gil_release is None:
        _without_gil_release = _keeping_gil(libca, "ca_current_context", ctypes.c_void_p, [])
    return _without_gil_release()


def poll(evt: float = 1.e-5, iot: float = 1.0) -> int | None:
    """pyepics' ``poll``, except in a thread where libca refused it before."""
    thread = threading.current_thread()
    if _refusing_threads.get(thread.ident) is thread:
        return ECA_EVDISALLOW
    status = _pyepics_poll(evt, iot)
    if status == ECA_EVDISALLOW:
        _refusing_threads[thread.ident] = thread
    return status


def keep_gil_in_primary_lock_calls() -> None:
    """Make libca's :data:`PRIMARY_LOCK_ONLY` calls, as pyepics looks them up on
    ``ca.libca``, keep the GIL (libca is started first if need be)."""
    global _swapped_libca
    libca = _started_libca()
    if libca is ca._LIBCA_FINALIZED or libca is _swapped_libca:
        return
    _pyepics_calls.clear()
    for name in PRIMARY_LOCK_ONLY:
        own = getattr(libca, name)
        _pyepics_calls[name] = own
        setattr(libca, name, _keeping_gil(libca, name, own.restype, own.argtypes))
    _swapped_libca = libca


def install() -> None:
    """Make pyepics (and so ophyd) use :func:`current_context`, :func:`poll` and
    the GIL-keeping :data:`PRIMARY_LOCK_ONLY` calls."""
    ca.current_context = current_context
    ca.poll = poll
    keep_gil_in_primary_lock_calls()


def uninstall() -> None:
    """Back to pyepics' own functions."""
    global _swapped_libca
    ca.current_context = _pyepics_current_context
    ca.poll = _pyepics_poll
    if _swapped_libca is not None:
        for name, own in _pyepics_calls.items():
            setattr(_swapped_libca, name, own)
        _swapped_libca = None


def installed() -> bool:
    return ca.current_context is current_context and ca.poll is poll and ca.libca is _swapped_libca
