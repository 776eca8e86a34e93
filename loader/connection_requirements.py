"""ophyd's "required for connection" updates, kept by subclasses.

Why: ophyd lists a Device class's ``@required_for_connection`` methods (an
``EpicsMotor``'s first position and done-moving updates) from that class's own
``__dict__`` only (``Device._initialize_device``).  A subclass -- our
``EpicsMotorWithSREV``, apstools' motors -- therefore requires none, and counts as
connected before its first position has arrived.  Under load (ophyd's monitor
thread thousands of updates behind) a load returned with motors whose
``position`` was None, and ``%wa`` failed on them.

How: before a load builds anything, each device class, and the class of every
sub-device it declares, gets back its bases' requirements that are met by an
EPICS monitor: a method subscribed (``Component.sub_value`` and the like) to
Channel Access signals, which always deliver a first update once connected, and
which the class still uses (an override without the decorator drops it, as
ophyd would).  Requirements met by a plain call are left out: ophyd's
``PVPositioner`` requires ``_move_changed``, which a soft "done" signal (ours,
apstools') calls only at the first move, so a device would never connect.
``Device.__init__`` copies the class's dictionary per instance, and ophyd's
wrapper removes an entry when its method first runs, so ``connected`` and the
loader's wait then include those updates.
"""
from __future__ import annotations

import inspect
import logging

logger = logging.getLogger(__name__)


def _met_by_a_monitor(key) -> bool:
    from ophyd.signal import EpicsSignalBase
    subscriptions = getattr(key, "_subscriptions", None) or []
    return bool(subscriptions) and all(
        isinstance(component.cls, type) and issubclass(component.cls, EpicsSignalBase)
        for component, _event_type in subscriptions)


def _still_used(cls: type, key) -> bool:
    """``cls`` still runs the base's method (not an override without the decorator)."""
    method = getattr(cls, key.__name__, None)
    return method is not None and inspect.unwrap(method) is key


def _inherited(cls: type) -> dict:
    """What ``cls``'s bases require, met by a monitor, for methods ``cls`` still uses."""
    merged: dict = {}
    for klass in reversed(cls.__mro__[1:]):
        merged.update(vars(klass).get("_required_for_connection", {}))
    return {key: description for key, description in merged.items()
            if _met_by_a_monitor(key) and _still_used(cls, key)}


def restore(cls: type, _seen: set | None = None) -> None:
    """Give ``cls`` and its declared sub-device classes their bases' requirements."""
    from ophyd import Device
    seen = set() if _seen is None else _seen
    if not (isinstance(cls, type) and issubclass(cls, Device)) or cls in seen:
        return
    seen.add(cls)
    missing = {key: description for key, description in _inherited(cls).items()
               if key not in cls._required_for_connection}
    if missing:
        cls._required_for_connection = {**missing, **cls._required_for_connection}
    for component in cls._sig_attrs.values():
        restore(getattr(component, "cls", None), seen)


def replay_missed_first_updates(dev) -> int:
    """Run each requirement still pending on the Device ``dev`` whose signal has
    already had its update: how many were run.

    Why: ophyd subscribes a device's methods to a component signal just after
    creating it, with ``run=signal.connected``.  A signal whose first value came in
    before its metadata (a PV another object already monitors, a fast IOC) is not
    "connected" yet, so the cached value is not replayed; and if ophyd's monitor
    thread listed the signal's callbacks just before the method was added, the
    method never sees that value.  The requirement then stays pending until the PV
    changes, which an idle motor's readback never does: a load waited its whole
    timeout for a live motor, "waiting for the first monitor updates", with ophyd's
    monitor queue empty.  Called once the device is built (its subscriptions made).
    A method run twice for the same value (the monitor thread was about to call it)
    only sets the same state again."""
    replayed = 0
    for key in list(dev._required_for_connection):
        for component, event_type in getattr(key, "_subscriptions", None) or ():
            signal = dev._signals.get(component.attr)
            cached = signal._args_cache.get(event_type) if signal is not None else None
            if cached is None or key not in dev._required_for_connection:
                continue
            args, kwargs = cached
            try:
                getattr(dev, key.__name__)(*args, **kwargs)   # ophyd's wrapper marks it met
                replayed += 1
            except Exception:
                logger.exception("%s: replaying %s's first update failed", dev.name, component.attr)
    return replayed
