"""ophyd's namedtuple of each Device class (``Device._device_tuple``), made at first use.

Why: ophyd's ``Device.__init_subclass__`` builds a ``namedtuple`` for every Device
class it defines (what ``Device.get()`` returns and ``Device.put()`` takes), and
``collections.namedtuple`` compiles each one with ``eval``: ~0.2 ms a class.
``import ophyd`` alone defines ~480 Device classes (its area-detector cams and
plugins): ~0.1 s of every load's start, for tuples a session asks of a few devices.

How: ophyd's ``Device._initialize_device`` calls the name ``namedtuple`` of the
``ophyd.device`` module.  :func:`install` rebinds that name, right after the module
has run (a one-time hook on the import system; at once if ophyd is imported
already), to :class:`DeviceTuple`: a descriptor, stored where the namedtuple was,
that makes the same namedtuple (its name, fields and module) on the first read
through the class or an instance, and returns that one from then on.
``tests/test_device_tuples.py`` fails if a future ophyd builds the tuple elsewhere.
"""
from __future__ import annotations

import collections
import importlib.abc
import sys
import threading
from typing import Any, Iterable

MODULE = "ophyd.device"

_lock = threading.Lock()


class DeviceTuple:
    """``cls._device_tuple`` until first read: then the namedtuple ophyd would have made."""

    __slots__ = ("typename", "field_names", "_made")

    def __init__(self, typename: str, field_names: Iterable[str]) -> None:
        self.typename = typename
        self.field_names = list(field_names)
        self._made = None

    def __get__(self, obj: Any, owner: type | None = None) -> type:
        made = self._made
        if made is None:
            with _lock:
                if self._made is None:
                    self._made = collections.namedtuple(self.typename, self.field_names, module=MODULE)
                made = self._made
        return made


def _rebind(module) -> None:
    module.namedtuple = DeviceTuple


class _RebindAfterRun(importlib.abc.Loader):
    """The real loader of ``ophyd.device``, then :func:`_rebind` (anything else it is
    asked, such as its source for a traceback, goes to the real loader)."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _rebind(module)
        module.__loader__ = module.__spec__.loader = self._loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        _remove_hook()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RebindAfterRun(spec.loader)
                return spec
        return None


_hook = _Hook()


def _remove_hook() -> None:
    try:
        sys.meta_path.remove(_hook)
    except ValueError:
        pass


def install() -> None:
    """From now on, Device classes ophyd defines get a :class:`DeviceTuple` (those
    defined already keep their namedtuple)."""
    with _lock:
        module = sys.modules.get(MODULE)
        if module is not None:
            _rebind(module)
        elif _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)
