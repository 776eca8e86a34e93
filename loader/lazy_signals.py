"""Opt-in for big, rarely used devices: signals built on first use, PVs connected now.

``calcs`` and ``calcouts`` are three quarters of the training beamline's signals
(1,572 of ~2,100), and building an ophyd signal costs ~0.4 ms of Python whatever
its IOC does: they were about half of a load after its imports.  A device named in the config's
``load: lazy: [...]`` is built from :func:`lazy_class` instead: every signal of
it, at every depth, is a *lazy* ophyd component (as ophyd's area-detector PVs
already are), created when first touched.  Its sub-devices are still built with
it, so each one knows its PV names (``SwaitRecordChannel``'s depend on its
letter).

What the load keeps: every PV of those lazy signals is opened here as a bare
Channel Access channel (:func:`open_planned_channels`; the 1,572 take ~0.15 s of
CPU), and the load's one connection wait covers them (:func:`planned_channels`),
so a missing PV is still reported at load, by name.  When ophyd later creates the
signal, pyepics hands it the channel that is already connected (pyepics keeps one
channel per PV name), so first use waits only for the signal's metadata.

Only signals whose PV names follow from their component are made lazy: ophyd's
``EpicsSignal``, ``EpicsSignalRO`` and ``EpicsSignalWithRBV`` (and subclasses
that do not change the constructor).  Any other signal is built with the device,
as before.
"""
from __future__ import annotations

import copy
import threading
import time
import weakref
from typing import Any, Iterable, Iterator

from . import connection_requirements

PLANNED = "_loader_planned_channels"     # instance attribute: the device's PlannedChannels
SIBLING_POLL = 0.001                     # seconds between two looks at signals made together

_classes: "weakref.WeakKeyDictionary[type, type]" = weakref.WeakKeyDictionary()
_classes_lock = threading.RLock()


def _pv_rule(cls: type):
    """``(read PV, write PV or None)`` from ``(pv argument, write_pv keyword)`` for a
    signal class whose constructor is one of ophyd's own, else ``None``."""
    from ophyd.areadetector.base import EpicsSignalWithRBV
    from ophyd.signal import EpicsSignal, EpicsSignalBase, EpicsSignalRO
    if not (isinstance(cls, type) and issubclass(cls, EpicsSignalBase)):
        return None
    init = cls.__init__
    if init is EpicsSignalWithRBV.__init__:
        return lambda pv, write_pv: (pv + "_RBV", pv)
    if init is EpicsSignal.__init__:
        return lambda pv, write_pv: (pv, write_pv or pv)
    if init in (EpicsSignalRO.__init__, EpicsSignalBase.__init__):
        return lambda pv, write_pv: (pv, None)
    return None


def lazy_class(cls: type) -> type:
    """A subclass of ``cls`` (same name and module) whose predictable signal
    components, at every depth, are lazy; ``cls`` itself when nothing would change.

    The subclass is made once per class.  ``isinstance(obj, cls)`` holds.
    """
    from ophyd import Device
    if not (isinstance(cls, type) and issubclass(cls, Device)):
        return cls
    with _classes_lock:
        if cls in _classes:
            return _classes[cls]
        namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                     "__doc__": cls.__doc__, "_loader_lazy": True}
        sub_devices: dict[str, type] = {}
        changed = False
        for attr, cpt in cls._sig_attrs.items():
            if cpt.is_device:
                lazier = lazy_class(cpt.cls)
                if lazier is not cpt.cls:
                    namespace[attr] = copy.copy(cpt)
                    sub_devices[attr] = lazier
                    changed = True
            elif not cpt.lazy and _pv_rule(cpt.cls) is not None:
                namespace[attr] = lazy_cpt = copy.copy(cpt)
                lazy_cpt.lazy = True
                changed = True
        if not changed:
            _classes[cls] = cls
            return cls
        namespace["_instantiate_component"] = _with_siblings(cls._instantiate_component)
        lazy = type(cls.__name__, (cls,), namespace)
        for attr, lazier in sub_devices.items():
            # after the class statement: a DynamicDeviceComponent remakes its class there
            namespace[attr].cls = lazier
        # a subclass: ophyd would forget that a motor is connected only with its first position
        connection_requirements.restore(lazy)
        _classes[cls] = lazy
        return lazy


def _with_siblings(instantiate):
    """ophyd's ``Device._instantiate_component``, but the first lazy signal of a
    device touched (ophyd waiting for it) makes all of that device's lazy signals,
    without waiting, then waits for them together (bounded by the touched signal's
    connection timeout): ``describe_configuration()`` of a lazy ``calcs`` took 3.7 s
    with one wait per signal in turn, 1.0–2.0 s so (0.5–1.1 s built at load).  A
    sibling still not connected then is left as ophyd leaves a signal whose IOC went
    away; the touched one gets ophyd's own wait and error."""
    def _instantiate_component(self, attr):
        from ophyd.device import do_not_wait_for_lazy_connection
        cpt = self._sig_attrs.get(attr)
        if cpt is None or not cpt.lazy or cpt.is_device or not self.lazy_wait_for_connection:
            return instantiate(self, attr)
        with do_not_wait_for_lazy_connection(self):
            made = [getattr(self, other) for other in _unbuilt_lazy_signals(self)]
        wanted = self._signals[attr]
        # their metadata comes in bulk (loader/bulk_metadata.py): watched, not fetched one by one
        deadline = time.monotonic() + wanted.connection_timeout
        while not all(signal.connected for signal in made) and time.monotonic() < deadline:
            time.sleep(SIBLING_POLL)
        wanted.wait_for_connection()       # ophyd's own wait, and its error, for the one touched
        return wanted
    return _instantiate_component


def _unbuilt_lazy_signals(device) -> list[str]:
    """Attribute names of ``device``'s lazy signal components not made yet."""
    return [attr for attr, cpt in device._sig_attrs.items()
            if cpt.lazy and not cpt.is_device and attr not in device._signals]


def is_lazy(obj: Any) -> bool:
    """Was ``obj`` built from a :func:`lazy_class`?"""
    return "_loader_lazy" in type(obj).__dict__


class PlannedChannel:
    """A PV that lazy signals will use, opened as a bare channel.  It quacks like a
    signal for the load's connection wait (``connected``, ``pvname``, ``name``);
    ``uses`` says which signals: ``(dotted path from the device, reads, writes)``."""

    __slots__ = ("pvname", "name", "uses", "connected", "__weakref__")

    def __init__(self, pvname: str, name: str):
        self.pvname = pvname
        self.name = name
        self.uses: list[tuple[str, bool, bool]] = []
        self.connected = False

    def open(self, keep_open: bool = True) -> None:
        """``keep_open``: no ophyd PV released later may clear the channel (see
        :func:`loader.bulk_metadata.keep_channel_open`)."""
        from epics import ca

        from .bulk_metadata import keep_channel_open
        if ca.current_context() is None:     # as pyepics' PV does: a thread without a
            ca.use_initial_context()         # context would make its own
        if keep_open:
            keep_channel_open(self.pvname)   # a destroyed ophyd PV on it must not clear it
        # pyepics calls back at once if the channel is already connected, and on every change
        ca.create_channel(self.pvname, connect=False, auto_cb=True, callback=self._on_connection)

    def _on_connection(self, pvname=None, chid=None, conn=False, **kwargs) -> None:
        self.connected = bool(conn)

    def __repr__(self) -> str:
        return f"<PlannedChannel {self.pvname} ({'connected' if self.connected else 'not connected'})>"


def _planned_pvs(device) -> Iterator[tuple[str, str, bool, bool]]:
    """``(PV, signal's dotted path, read?, written?)`` for each PV of each lazy
    signal of ``device`` that is not built yet."""
    path = device.dotted_name
    for attr in _unbuilt_lazy_signals(device):
        cpt = device._sig_attrs[attr]
        rule = _pv_rule(cpt.cls)
        if rule is None or cpt.suffix is None:
            continue
        write_pv = cpt.kwargs.get("write_pv")
        if write_pv is not None:
            write_pv = cpt.maybe_add_prefix(device, "write_pv", write_pv)
        read_pv, write_pv = rule(cpt.maybe_add_prefix(device, "suffix", cpt.suffix), write_pv)
        dotted = f"{path}.{attr}" if path else attr
        yield read_pv, dotted, True, write_pv == read_pv
        if write_pv is not None and write_pv != read_pv:
            yield write_pv, dotted, False, True


def open_planned_channels(obj) -> list[PlannedChannel]:
    """Open the channels of ``obj``'s lazy signals (each PV once), kept on ``obj``
    for :func:`planned_channels`.  Nothing for a device not built lazy."""
    from .connect import devices_of
    if not is_lazy(obj):
        return []
    channels: dict[str, PlannedChannel] = {}
    for device in devices_of(obj):
        for pv, dotted, reads, writes in _planned_pvs(device):
            if pv not in channels:
                channels[pv] = PlannedChannel(pv, f"{obj.name}.{dotted}")
                channels[pv].open()
            channels[pv].uses.append((dotted, reads, writes))
    planned = list(channels.values())
    setattr(obj, PLANNED, planned)
    return planned


def planned_channels(obj) -> list[PlannedChannel]:
    """The channels :func:`open_planned_channels` opened for ``obj``."""
    return list(getattr(obj, PLANNED, ()))


def created_together(device, attrs: Iterable[str]) -> list:
    """The components ``attrs`` (dotted paths) of ``device``, created together.

    ophyd waits for each *lazy* component (area detector PVs are lazy, and every
    signal of a ``load: lazy`` device) to connect as it creates it, so touching nine
    of them costs nine connection waits in a row (~0.3 s); created without that wait
    they connect side by side, and the first put waits (bounded) for its own signal.
    """
    from ophyd.device import do_not_wait_for_lazy_connection
    found = []
    for path in attrs:
        obj = device
        for part in path.split("."):
            with do_not_wait_for_lazy_connection(obj):
                obj = getattr(obj, part)
        found.append(obj)
    return found


def build_lazy_signals(device, timeout: float = 10.0, attrs: Iterable[str] | None = None) -> None:
    """Create the lazy signals ``attrs`` (dotted paths; default: every one not built
    yet) of ``device`` all at once, then wait (bounded) for them: touched one by one,
    each would wait for its own connection and metadata in turn.  ``TimeoutError``
    (ophyd's) names a PV that did not connect."""
    from ophyd.device import do_not_wait_for_lazy_connection

    from .connect import devices_of
    signals = []
    if attrs is None:
        for dev in devices_of(device):
            with do_not_wait_for_lazy_connection(dev):
                signals += [getattr(dev, attr) for attr, cpt in dev._sig_attrs.items() if not cpt.is_device]
    else:
        signals = created_together(device, attrs)
    deadline = time.monotonic() + timeout
    for signal in signals:      # they connect side by side: the first wait is the long one
        signal.wait_for_connection(timeout=max(deadline - time.monotonic(), 0.001))
