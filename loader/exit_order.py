"""At interpreter exit, ophyd's callback threads stop before any channel is cleared.

Why: ophyd's signals release their channels at exit through ``weakref.finalize``,
whose one ``atexit`` handler is registered when the first finalizer is made (the
first signal built), after ophyd's own handler that stops its callback threads.
``atexit`` runs the last registered first, so channels were cleared under
callbacks still running on ophyd's monitor thread: after a load of 1000 motors,
``EpicsMotor``'s limit callback, in a blocking get while the IOC was still
answering, printed "Unexpected channel ID" or "Expected CA context is unset"
tracebacks as the session ended (in two of three runs).

:func:`install` makes sure the handlers that clear channels are registered
(pyepics' ``finalize_libca``: libca started; the finalizers': one finalizer
made), then registers :func:`stop_callback_threads` after them, so it runs
first.  It lets a callback in progress finish (its gets are bounded by their own
timeouts, the whole wait by :data:`STOP_TIMEOUT`); ophyd's own handler later
finds the threads stopped.
"""
from __future__ import annotations

import atexit
import logging
import time
import weakref

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0     # seconds, for all of ophyd's callback threads together

_installed = False


def install() -> None:
    """Register :func:`stop_callback_threads` to run before the handlers that clear channels."""
    global _installed
    if _installed:
        return
    from epics import ca
    if ca.libca is None:
        ca.initialize_libca()       # registers pyepics' handler, so ours runs before it
    # ophyd's signals also clear their channels at exit, through weakref.finalize,
    # whose one atexit handler is registered when the first finalizer is made
    weakref.finalize(install, lambda: None).detach()
    atexit.register(stop_callback_threads)
    _installed = True


def stop_callback_threads(timeout: float = STOP_TIMEOUT) -> None:
    """Stop ophyd's dispatcher threads, each after the callback it is running."""
    from ophyd import _pyepics_shim as shim
    dispatcher = shim.get_dispatcher()
    if dispatcher is None:      # ophyd's pyepics layer never set up, or already stopped
        return
    dispatcher.stop_event.set()
    deadline = time.monotonic() + timeout
    for name, thread in dispatcher.threads.items():
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("ophyd's %s thread is still in a callback at exit: %s",
                               name, getattr(thread, "current_callback", None))
