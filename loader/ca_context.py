"""pyepics' ``current_context()`` without giving up the GIL (issue 7).

pyepics calls ``ca.current_context()`` before nearly every PV operation (each
``PV`` method through ``_ensure_context``, every ``get_cache``).  It calls
libca's ``ca_current_context`` through a ``ctypes.CDLL``, and ctypes releases
the GIL around every such call.  While a load builds thousands of signals,
several threads want the GIL (constructors, libca's receive thread running
callbacks, ophyd's dispatcher), so each of these calls became a GIL hand-off,
a context switch and the wait to get the GIL back.

``ca_current_context`` only reads a thread-private variable (EPICS base,
``ca/client/access.cpp``): it takes no lock and never blocks, so it is safe to
call while holding the GIL.  :func:`install` swaps pyepics' module-level
``current_context`` for one that calls the same symbol of the same library
through ``ctypes.PyDLL``, which keeps the GIL.  No other libca call is changed:
the rest take libca's locks, and holding the GIL there could deadlock with a
callback thread.  pyepics' own functions and ``epics.pv`` look the name up in
``epics.ca`` at call time, so the swap reaches them; ``tests/test_ca_context.py``
fails if a future pyepics stops doing so.
"""
from __future__ import annotations

import ctypes
from typing import Callable

from epics import ca

_without_gil_release: Callable[[], int | None] | None = None
_pyepics_current_context = ca.current_context


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


def install() -> None:
    """Make pyepics (and so ophyd) use :func:`current_context`."""
    ca.current_context = current_context


def uninstall() -> None:
    """Back to pyepics' own ``current_context``."""
    ca.current_context = _pyepics_current_context


def installed() -> bool:
    return ca.current_context is current_context
