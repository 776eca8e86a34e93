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
