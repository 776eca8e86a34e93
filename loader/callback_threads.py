"""libca's callback threads keep one Python thread state each (issue 7).

libca runs our callbacks on its own threads (a receive thread per IOC circuit),
which Python did not start.  ctypes enters each callback with
``PyGILState_Ensure`` and leaves with ``PyGILState_Release``; on such a thread
the release deletes the thread state it made, so every callback built a new one
(a 16 KiB frame stack mapped and unmapped, the interpreter's thread list locked
twice) and lost its ``threading.local`` data.  A load of the training beamline
runs about 13,000 callbacks there; strace counted 13,000 ``mmap``/``munmap``
pairs, about 0.2 s of system time.

:func:`keep_thread_state`, called at the top of a callback, takes one more
``PyGILState_Ensure`` the first time it runs on a thread and never releases it:
ctypes' release then leaves the state in place, and the thread's later callbacks
reuse it.  On a thread Python started, the extra count is harmless (the thread
deletes its state when it ends, whatever the count).  When a circuit closes (its
IOC went away), its thread ends and leaves its state (a few KiB) to the
interpreter's exit; pyepics destroys libca's context at exit, before the
interpreter clears thread states.
"""
from __future__ import annotations

import ctypes
import threading

_this_thread = threading.local()     # on a callback thread, lives as long as its state


def keep_thread_state() -> None:
    """Make the calling thread's Python thread state outlive the current callback."""
    if getattr(_this_thread, "kept", False):
        return
    ctypes.pythonapi.PyGILState_Ensure()     # PyDLL: called with the GIL held
    _this_thread.kept = True
