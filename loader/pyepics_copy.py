"""pyepics' copy of every get reply, as a byte copy (issue 7).

libca hands a get callback a buffer that is valid only during the callback, so
pyepics' handler (``ca._onGetEvent``, on libca's receive thread) keeps a copy:
``copy.deepcopy`` of the reply's ctypes structure and value array.  ``deepcopy``
reaches a ctypes object through its pickle support (``__reduce__``, a bytes
object, a new instance set from it): 18-22 us a reply, against ~4 us for
``from_buffer_copy``, which gives the same type over a copy of the same bytes.
A 1000-motor load takes ~23,000 such replies on the thread that also delivers every
connection and monitor update, ~0.35 s of it.

pyepics looks ``deepcopy`` up in ``epics.ca`` at call time (``from copy import
deepcopy``), so :func:`install` swaps that name; anything other than ctypes
structures and arrays (and lists of them, with ``None`` for a missing part) still
goes to ``copy.deepcopy``.  DBR structures hold no pointers (``deepcopy`` refuses
those anyway), so the bytes are the whole value.  ``tests/test_pyepics_copy.py``
fails if a future pyepics stops copying replies through that name.
"""
from __future__ import annotations

import copy
import ctypes
from typing import Any

from epics import ca

_CTYPES_DATA = (ctypes.Structure, ctypes.Union, ctypes.Array)
_pyepics_deepcopy = ca.deepcopy


def byte_copy(obj: Any, memo: dict | None = None) -> Any:
    """``copy.deepcopy(obj)`` for what pyepics copies, made with ``from_buffer_copy``."""
    if isinstance(obj, _CTYPES_DATA):
        return type(obj).from_buffer_copy(obj)
    if type(obj) is list and all(part is None or isinstance(part, _CTYPES_DATA) for part in obj):
        return [None if part is None else type(part).from_buffer_copy(part) for part in obj]
    return copy.deepcopy(obj, memo)


def install() -> None:
    """Make pyepics copy get replies (and ctypes arrays) with :func:`byte_copy`."""
    ca.deepcopy = byte_copy


def uninstall() -> None:
    """Back to ``copy.deepcopy``."""
    ca.deepcopy = _pyepics_deepcopy


def installed() -> bool:
    return ca.deepcopy is byte_copy
