"""ophyd's namedtuple of each Device class (``Device._device_tuple``), made at first use.

Why: ophyd's ``Device.__init_subclass__`` builds a ``namedtuple`` for every Device
class it defines (what ``Device.get()`` returns and ``Device.put()`` takes), and
``collections.namedtuple`` compiles each one with ``eval``: ~0.2 ms a class.
``import ophyd`` alone defines ~480 Device classes (its area-detector cams and
plugins): ~0.1 s of every load's start, for tuples a session asks of a few devices.

How: ophyd's ``Device._initialize_device`` calls the name ``namedtuple`` of the
``ophyd.device`` module.  :func:`install` rebinds that name, right after the module
has run (:func:`loader.import_hooks.after_import`; at once if ophyd is imported
already), to :class:`DeviceTuple`: a descriptor, stored where the namedtuple was,
that makes the same namedtuple (its name, fields and module) on the first read
through the class or an instance, and returns that one from then on.
``tests/test_device_tuples.py`` fails if a future ophyd builds the tuple elsewhere.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Iterable

from .import_hooks import after_import

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


def install() -> None:
    """From now on, Device classes ophyd defines get a :class:`DeviceTuple` (those
    defined already keep their namedtuple)."""
    after_import(MODULE, _rebind)
