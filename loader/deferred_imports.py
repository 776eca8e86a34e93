"""Import on first use what the device libraries import at start but a session does not use.

Why: the device classes come from ``apstools.devices`` and ``apstools.synApps``,
whose ``__init__`` modules import every submodule, and with them libraries a
load never touches: pint (for the SRS570 pre-amplifier), h5py (the NeXus
writer) and openpyxl (spreadsheets; 0.1 s, 175 modules).  ophyd's area
detector base imports networkx (0.15 s) for three methods that draw or check
the graph of a detector's plugin ports.

How: before the device classes are imported, each of :data:`DEFERRED` that is
installed and not yet imported gets a stand-in in ``sys.modules``.
``import pint`` then binds the stand-in, and the first attribute read through it
(``pint.UnitRegistry``, ``dir()``) imports the real module and forwards to it from
then on.  A submodule import (``import h5py._hl.files``) also imports the real
package first; CPython's import system, which had already looked for the
submodule in ``sys.modules`` before the package ran, is then handed the module
the package itself imported (:class:`_AlreadyImported`), never a second copy.
The packages in :data:`SUBMODULES_ALONE` instead let a submodule be imported
without them: apstools subclasses ``openpyxl.utils.exceptions.InvalidFileException``
at import, and ``openpyxl.utils`` needs nothing from openpyxl's ``__init__``,
which imports the whole library.  A module below a package can be deferred with
its parents (``epicscorelibs.path.pyepics``, :mod:`loader.libca_path`).  Each
package names the submodules imported or deferred below it, as the import system
does.  Nothing changes for code that uses these libraries, except when the
import cost is paid.  ``matplotlib.pyplot`` and pandas are not deferred: bluesky's
``BestEffortCallback`` and apstools' class bodies use them during the load.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any, Iterable

# imported by apstools' package __init__ chain (and networkx by ophyd.areadetector.base),
# unused until a user asks for them
DEFERRED = ("pint", "h5py", "openpyxl", "networkx")
# packages whose submodules are imported without running the package's __init__
SUBMODULES_ALONE = frozenset({"openpyxl"})

_lock = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in for a module until it is first used, then forwards to it."""

    def __init__(self, spec, submodules_alone: bool = False) -> None:
        super().__init__(spec.name)
        # the import system reads __spec__ (and _initializing) of a module found in
        # sys.modules: answered here, without importing; and a parent's __path__
        self.__dict__.update(__spec__=spec, __file__=spec.origin, __loader__=spec.loader,
                             __package__=spec.parent, _deferred_real=None)
        if submodules_alone and spec.submodule_search_locations is not None:
            self.__dict__["__path__"] = list(spec.submodule_search_locations)

    def _deferred_load(self) -> types.ModuleType:
        real = self.__dict__["_deferred_real"]
        if real is None:
            name = self.__name__
            with _lock:
                if sys.modules.get(name) is self:
                    del sys.modules[name]
            # outside our lock: two threads meet on the import system's own module lock
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, self)   # the error again at the next use
                raise
            self.__dict__["_deferred_real"] = real
            for attr, value in list(self.__dict__.items()):
                # a submodule named on the stand-in stays named on the real package
                if attr not in real.__dict__ and self._is_submodule(attr, value):
                    setattr(real, attr, value)
        return real

    def _is_submodule(self, attr: str, value: Any) -> bool:
        """``value`` is the module ``<this one>.<attr>`` (imported alone, or deferred)."""
        return isinstance(value, types.ModuleType) and sys.modules.get(f"{self.__name__}.{attr}") is value

    def __getattr__(self, attr: str) -> Any:
        # only called for what the stand-in itself does not have
        return getattr(self._deferred_load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        if self.__dict__["_deferred_real"] is None and self._is_submodule(attr, value):
            self.__dict__[attr] = value     # named here, without importing the real module
            return
        setattr(self._deferred_load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._deferred_load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._deferred_load())

    def __repr__(self) -> str:
        real = self.__dict__["_deferred_real"]
        return repr(real) if real is not None else f"<module {self.__name__!r} (imported at first use)>"


class _AlreadyImported(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a submodule of a deferred package that importing the real package has
    just imported, and "loads" it as that same module object."""

    def find_spec(self, name: str, path=None, target=None):
        module = sys.modules.get(name)
        if module is None or target is not None or not _below_deferred(name):
            return None                                  # target: importlib.reload, left alone
        spec = importlib.util.spec_from_loader(name, self, is_package=hasattr(module, "__path__"))
        spec.loader_state = (module, module.__spec__)
        return spec

    def create_module(self, spec):
        return spec.loader_state[0]

    def exec_module(self, module) -> None:
        # the import system has just set our spec on the module: give it its own back
        module.__spec__ = module.__spec__.loader_state[1]


_deferred_names: set[str] = set()
_finder = _AlreadyImported()


def _below_deferred(name: str) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in _deferred_names for i in range(1, len(parts)))


def _find_spec(name: str):
    """``name``'s spec, found without running its parent (``importlib.util.find_spec``
    reads the parent's ``__path__``, which imports a deferred parent)."""
    parent = name.rpartition(".")[0]
    if not parent:
        return importlib.util.find_spec(name)
    locations = sys.modules[parent].__spec__.submodule_search_locations
    return None if locations is None else importlib.machinery.PathFinder.find_spec(name, locations)


def defer(names: Iterable[str] = DEFERRED,
          submodules_alone: Iterable[str] = SUBMODULES_ALONE) -> list[str]:
    """Put a stand-in in ``sys.modules`` for each of ``names`` that is installed and
    not yet imported; returns the names deferred.  A dotted name is deferred only
    when its parent is imported or deferred (earlier in ``names``): the parent
    then names the stand-in, as it would name the module.  The packages among
    ``submodules_alone`` let their submodules be imported without themselves."""
    submodules_alone = frozenset(submodules_alone)
    deferred = []
    with _lock:
        for name in names:
            parent = name.rpartition(".")[0]
            if name in sys.modules or (parent and parent not in sys.modules):
                continue
            spec = _find_spec(name)
            if spec is None:
                continue         # not installed: ``import`` raises as it always did
            sys.modules[name] = DeferredModule(spec, name in submodules_alone)
            if parent:   # named on its parent, as the import system names what it imports
                setattr(sys.modules[parent], name.rpartition(".")[2], sys.modules[name])
            _deferred_names.add(name)
            deferred.append(name)
        if deferred and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    return deferred


def is_deferred(name: str) -> bool:
    """True while ``name`` is a stand-in whose real module has not been imported."""
    module = sys.modules.get(name)
    return isinstance(module, DeferredModule) and module.__dict__["_deferred_real"] is None
