"""Run a function right after a module has been imported, without importing it.

Why: some of a load's import-time savings act on a module just after it has run
(``ophyd.device``'s namedtuples, :mod:`loader.device_tuples`; the modules below
``bluesky.callbacks`` left to first use, :mod:`loader.deferred_imports`).  Importing
that module up front to get at it costs what it imports (bluesky: ~0.06 s) in
every load that never needs it.

How: :func:`after_import` runs its function at once if the module is imported
already; otherwise a finder on ``sys.meta_path`` hands the import system the
module's own spec with its loader wrapped: the real loader runs the module, then
the functions run on it, and the module gets its real loader back.  A module whose
import fails keeps its functions for the next attempt; the finder leaves
``sys.meta_path`` when no function is waiting.
"""
from __future__ import annotations

import importlib.abc
import sys
import threading
from types import ModuleType
from typing import Any, Callable

_lock = threading.RLock()
_waiting: dict[str, list[Callable[[ModuleType], Any]]] = {}


class _RunAfter(importlib.abc.Loader):
    """A module's real loader, then the functions waiting for it (anything else it
    is asked, such as its source for a traceback, goes to the real loader)."""

    def __init__(self, loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._loader
        with _lock:
            then = _waiting.pop(self._name, [])
            if not _waiting:
                _remove_finder()
        for function in then:
            function(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _waiting:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RunAfter(spec.loader, fullname)
                return spec
        return None


_finder = _Finder()


def _remove_finder() -> None:
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass


def after_import(name: str, then: Callable[[ModuleType], Any]) -> None:
    """``then(module)`` once module ``name`` has run: now if it is imported (or being
    imported), else right after its import, in the importing thread."""
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            functions = _waiting.setdefault(name, [])
            if then not in functions:       # asked again by a later load: run once
                functions.append(then)
            if _finder not in sys.meta_path:
                sys.meta_path.insert(0, _finder)
            return
    then(module)


def waiting(name: str) -> bool:
    """True while functions wait for ``name`` to be imported."""
    with _lock:
        return name in _waiting
