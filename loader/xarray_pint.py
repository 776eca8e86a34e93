"""xarray's check for pint arrays, answered without importing pint while nothing has.

Why: the first time a session reads data through databroker, xarray's
``to_numpy`` asks whether the array is a ``pint.Quantity`` and imports pint to
know (0.3 s here, most of it pint's own definition parser), though a load leaves
pint for first use (:mod:`loader.deferred_imports`).  While pint has not been
imported no object can be one of its quantities, so the answer is "no" without
importing it; once anything imports pint, xarray's own check is used again.

How (a private hook, so :func:`install` checks for it and otherwise does
nothing; ``tests/test_deferred_imports.py`` fails if a future xarray drops it): xarray
keeps one ``DuckArrayModule`` per library in ``xarray.namedarray.pycompat.
_cached_duck_array_modules``; the entry for pint is one whose ``type`` is empty
while pint is deferred and not imported.  Its other attributes (module, version,
whether pint is available) are xarray's own, which import pint to answer.
"""
from __future__ import annotations

import functools
import sys

from .deferred_imports import is_deferred

PYCOMPAT = "xarray.namedarray.pycompat"


def install() -> bool:
    """Give xarray (if it is imported) the entry for pint above; True if it now has it."""
    pycompat = sys.modules.get(PYCOMPAT)
    if pycompat is None or not is_deferred("pint"):
        return False
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    base = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or not isinstance(base, type):
        return False
    if "pint" not in cache:
        cache["pint"] = _entry_class(base)()
    return isinstance(cache["pint"], _PintEntry)


class _PintEntry:
    """Marks the entry made here (mixed into a subclass of xarray's ``DuckArrayModule``)."""

    def __init__(self) -> None:
        self._real = None

    _base: type      # xarray's DuckArrayModule

    def _xarrays_own(self):
        if self._real is None:
            self._real = self._base("pint")       # imports pint
        return self._real

    @property
    def type(self) -> tuple:
        if self._real is None and is_deferred("pint"):
            return ()                       # isinstance(x, ()) is False, as it would be
        return self._xarrays_own().type

    @property
    def module(self):
        return self._xarrays_own().module

    @property
    def version(self):
        return self._xarrays_own().version

    @property
    def available(self) -> bool:
        return self._xarrays_own().available


@functools.cache
def _entry_class(base: type) -> type:
    return type("PintUntilImported", (_PintEntry, base), {"_base": base, "__module__": __name__})
