"""Which loaded objects read and which write a given PV (the training notebook's ``findpv``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .lazy_signals import planned_channels


def normalise(pv: str) -> str:
    """``gp:userCalc8`` and ``gp:userCalc8.VAL`` are the same record field."""
    return pv[:-4] if pv.endswith(".VAL") else pv


def signals_with_names(name: str, obj) -> Iterable[tuple[str, Any]]:
    """(dotted name, signal) for ``obj`` and every signal it has created."""
    from ophyd import Device
    if isinstance(obj, Device):
        for walk in obj.walk_signals(include_lazy=False):
            yield f"{name}.{walk.dotted_name}", walk.item
    else:
        yield name, obj


def findpv(pv: str, objects: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"read": [...], "write": [...]}``: dotted names of the signals on ``pv``."""
    target = normalise(pv)
    found: dict[str, list[str]] = {"read": [], "write": []}
    for name, obj in objects.items():
        for dotted, sig in signals_with_names(name, obj):
            read_pv = getattr(sig, "pvname", None)
            write_pv = getattr(sig, "setpoint_pvname", None)
            if read_pv and normalise(read_pv) == target:
                found["read"].append(dotted)
            if write_pv and normalise(write_pv) == target and not getattr(sig, "read_only", False):
                found["write"].append(dotted)
        # signals of a lazily built device (``load: lazy``) that nothing has touched yet
        for channel in planned_channels(obj):
            if normalise(channel.pvname) == target:
                for dotted, reads, writes in channel.uses:
                    for kind, does in (("read", reads), ("write", writes)):
                        if does:
                            found[kind].append(f"{name}.{dotted}")
    return {k: sorted(set(v)) for k, v in found.items()}
