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
which imports the whole library.  happi is one too: a load makes its entries
happi items (``happi.containers``, ``happi.item``), while happi's ``__init__``
imports its client, every database backend (pymongo: ~0.05 s) and its device
loader (jinja2, asyncio): ~0.1 s a load did not use.  A module below a package can be deferred with
its parents (``epicscorelibs.path.pyepics``, :mod:`loader.libca_path`).
apstools' own ``apstools.devices`` and ``apstools.synApps`` (:data:`EXPORTED`,
0.2 s, ~50 device modules) are deferred too: a name read from one of them
(``apstools.synApps.SwaitRecord``, ``from apstools.devices import ...``) is taken
from the one submodule the package's ``__init__`` imports it from, read from its
source (:mod:`loader.package_exports`), and only a name not found so (``dir()``,
``__all__``) imports the package itself.  Each
package names the submodules imported or deferred below it, as the import system
does.  Nothing changes for code that uses these libraries, except when the
import cost is paid.

pandas (0.2 s) and bluesky's ``best_effort`` module (0.4 s: it imports
``matplotlib.pyplot``) are deferred too, though apstools takes a name from each
at import: ``TableStyle.pandas = pandas.DataFrame`` in an enum's body, and
``from bluesky.callbacks.best_effort import BestEffortCallback``.  While the
device classes import (:func:`lending_names`), such a name (:data:`LENT`) is
lent as a :class:`LentName`, which imports the module when it is first used;
outside that window the same import gives the real object, as always.  A call
made at import only to set the module's own options (apstools:
``pd.set_option("display.max_rows", None)``, :data:`REPLAYED`) is made on the
real module as soon as it is imported.  xarray's check for pint arrays, at a
session's first read of data, is answered without importing pint while it is
deferred (:mod:`loader.xarray_pint`).
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
import types
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from .import_hooks import after_import, waiting
from .package_exports import read_exports

# imported by apstools' package __init__ chain (networkx by ophyd.areadetector.base, happi's
# client and backends by its __init__), unused until a user asks for them
DEFERRED = ("pint", "h5py", "openpyxl", "networkx", "pandas", "bluesky.callbacks.best_effort",
            "apstools.devices", "apstools.synApps", "happi")
# packages whose submodules are imported without running the package's __init__
SUBMODULES_ALONE = frozenset({"openpyxl", "happi"})
# packages whose names are taken from the one submodule their __init__ imports each from
EXPORTED = frozenset({"apstools.devices", "apstools.synApps"})
# names apstools takes from a deferred module at import but uses only later
LENT = {"pandas": ("DataFrame",), "bluesky.callbacks.best_effort": ("BestEffortCallback",)}
# functions apstools calls at import only to set the deferred module's options
REPLAYED = {"pandas": ("set_option",)}
# packages the modules of DEFERRED below them wait for: deferred as soon as the package is imported
PARENTS_IMPORTED = ("bluesky.callbacks", "apstools")

logger = logging.getLogger(__name__)
_lock = threading.RLock()
_lending = threading.local()


@contextmanager
def lending_names() -> Iterator[None]:
    """In this thread, until the block ends, a name of :data:`LENT` read from its
    deferred module is lent (:class:`LentName`) instead of importing the module."""
    before = getattr(_lending, "active", False)
    _lending.active = True
    try:
        yield
    finally:
        _lending.active = before


class LentName:
    """Stands in for ``module.name`` until it is used: calling it, reading its
    attributes, ``isinstance``/``issubclass`` and subclassing it import the module
    and go to the real object.  Dunder probes (an enum's descriptor test, copy,
    pickle) import nothing."""

    __slots__ = ("_module", "_name", "_real")

    def __init__(self, module: DeferredModule, name: str) -> None:
        self._module = module
        self._name = name
        self._real = None

    def resolve(self) -> Any:
        """The real object (its module is imported now, if it was not yet)."""
        if self._real is None:
            self._real = getattr(self._module._deferred_load(), self._name)
        return self._real

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self.resolve())

    def __subclasscheck__(self, cls: type) -> bool:
        return issubclass(cls, self.resolve())

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (self.resolve(),)

    def __repr__(self) -> str:
        if self._real is not None:
            return repr(self._real)
        return f"<{self._module.__name__}.{self._name} (imported at first use)>"


class ReplayedCall:
    """Stands in for ``module.name``, a function that sets the module's options:
    called before the module is imported, the call is made on the real module as
    soon as it is (and returns ``None`` now)."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: DeferredModule, name: str) -> None:
        self._module = module
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            if self._module.__dict__["_deferred_real"] is None:
                self._module.__dict__["_deferred_calls"].append((self._name, args, kwargs))
                return None
        return getattr(self._module._deferred_load(), self._name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{self._module.__name__}.{self._name} (called when {self._module.__name__} is imported)>"


class DeferredModule(types.ModuleType):
    """Stands in for a module until it is first used, then forwards to it."""

    def __init__(self, spec, submodules_alone: bool = False, lent: Iterable[str] = (),
                 replayed: Iterable[str] = (), exported: bool = False) -> None:
        super().__init__(spec.name)
        # the import system reads __spec__ (and _initializing) of a module found in
        # sys.modules: answered here, without importing; and a parent's __path__
        lent = {name: LentName(self, name) for name in lent}
        lent.update((name, ReplayedCall(self, name)) for name in replayed)
        self.__dict__.update(__spec__=spec, __file__=spec.origin, __loader__=spec.loader,
                             __package__=spec.parent, _deferred_real=None,
                             _deferred_lent=lent, _deferred_calls=[], _deferred_exports=None,
                             _deferred_exported=exported)
        if (submodules_alone or exported) and spec.submodule_search_locations is not None:
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
            with _lock:
                self.__dict__["_deferred_real"] = real
                calls, self.__dict__["_deferred_calls"] = self.__dict__["_deferred_calls"], []
            for attr, value in list(self.__dict__.items()):
                # a submodule named on the stand-in stays named on the real package
                if attr not in real.__dict__ and self._is_submodule(attr, value):
                    setattr(real, attr, value)
            for function, args, kwargs in calls:
                try:
                    getattr(real, function)(*args, **kwargs)
                except Exception:
                    logger.exception("%s.%s%r, called before %s was imported, failed now",
                                     name, function, args, name)
        return real

    def _is_submodule(self, attr: str, value: Any) -> bool:
        """``value`` is the module ``<this one>.<attr>`` (imported alone, or deferred)."""
        return isinstance(value, types.ModuleType) and sys.modules.get(f"{self.__name__}.{attr}") is value

    def __getattr__(self, attr: str) -> Any:
        # only called for what the stand-in itself does not have
        if attr == "__path__" and self.__spec__.submodule_search_locations is None:
            # not a package (``from module import name`` asks)
            raise AttributeError(f"module {self.__name__!r} has no attribute '__path__'")
        if attr == "__all__":
            return self._names_for_star_import()
        lent = self.__dict__["_deferred_lent"].get(attr)
        if lent is not None and self.__dict__["_deferred_real"] is None and getattr(_lending, "active", False):
            return lent
        if self.__dict__["_deferred_exported"] and self.__dict__["_deferred_real"] is None:
            found = self._from_submodule(attr)
            if found is not _MISSING:
                return found
        return getattr(self._deferred_load(), attr)

    def _names_for_star_import(self) -> list[str]:
        """``from module import *`` reads ``__all__``, and without it takes the names of
        the module's ``__dict__`` not starting with ``_``: the stand-in's own, not the
        real module's.  So the stand-in always answers, with the real module's
        ``__all__`` or those names of the real module."""
        real = self._deferred_load()
        names = getattr(real, "__all__", None)
        if names is None:
            names = [name for name in vars(real) if not name.startswith("_")]
        return names

    def _from_submodule(self, attr: str) -> Any:
        """``attr`` as the package's ``__init__`` would bind it, from the one submodule
        it comes from (:mod:`loader.package_exports`); ``_MISSING`` if not known so."""
        with _lock:
            exports = self.__dict__["_deferred_exports"]
            if exports is None:
                exports = self.__dict__["_deferred_exports"] = read_exports(self.__file__, self.__name__)
        source = exports.get(attr)
        if source is None:
            return _MISSING
        module_name, name = source
        try:
            with lending_names():       # as when the package's __init__ imported it, at a load
                module = importlib.import_module(module_name)
            return module if name is None else getattr(module, name)
        except Exception:   # the package itself, then, with whatever error it raises
            logger.debug("%s.%s not found in %s alone", self.__name__, attr, module_name, exc_info=True)
            return _MISSING

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


_MISSING = object()
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
          submodules_alone: Iterable[str] = SUBMODULES_ALONE,
          lent: dict[str, Iterable[str]] = LENT,
          replayed: dict[str, Iterable[str]] = REPLAYED,
          parents_imported: Iterable[str] = PARENTS_IMPORTED,
          exported: Iterable[str] = EXPORTED) -> list[str]:
    """Put a stand-in in ``sys.modules`` for each of ``names`` that is installed and
    not yet imported; returns the names deferred.  A dotted name is deferred only
    when its parent is imported or deferred (earlier in ``names``): the parent
    then names the stand-in, as it would name the module.  The packages among
    ``submodules_alone`` let their submodules be imported without themselves;
    ``lent[name]`` are names the stand-in lends within :func:`lending_names`,
    ``replayed[name]`` functions whose calls wait for the real module.
    The names below a package of ``parents_imported`` that is not imported yet are
    deferred right after something imports it (:func:`loader.import_hooks.after_import`).
    A name read from a package among ``exported`` comes from the submodule its
    ``__init__`` imports it from, without the ``__init__`` (:mod:`loader.package_exports`)."""
    submodules_alone, exported = frozenset(submodules_alone), frozenset(exported)
    names = list(names)
    for parent in parents_imported:
        below = [name for name in names if name.startswith(parent + ".")]
        if below and parent not in sys.modules and not waiting(parent):
            # deferred as soon as something imports the parent: a load that never
            # imports bluesky does not pay ~0.06 s for it
            after_import(parent, functools.partial(
                _defer_below, below, submodules_alone, lent, replayed, exported))
    deferred = []
    with _lock:
        for name in names:
            parent = name.rpartition(".")[0]
            if name in sys.modules or (parent and parent not in sys.modules):
                continue
            spec = _find_spec(name)
            if spec is None:
                continue         # not installed: ``import`` raises as it always did
            sys.modules[name] = DeferredModule(spec, name in submodules_alone, lent.get(name, ()),
                                               replayed.get(name, ()), name in exported)
            if parent:   # named on its parent, as the import system names what it imports
                setattr(sys.modules[parent], name.rpartition(".")[2], sys.modules[name])
            _deferred_names.add(name)
            deferred.append(name)
        if deferred and _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    return deferred


def _defer_below(names: list[str], submodules_alone, lent, replayed, exported, parent_module) -> None:
    """:func:`defer` of the ``names`` below ``parent_module``, which has just been imported."""
    defer(names, submodules_alone, lent, replayed, (), exported)


def is_deferred(name: str) -> bool:
    """True while ``name`` is a stand-in whose real module has not been imported."""
    module = sys.modules.get(name)
    return isinstance(module, DeferredModule) and module.__dict__["_deferred_real"] is None
