"""swait (userCalc) setup actions: enable the calcs, the ``noisy`` Lorentzian
peak on a motor, and the ``temperature`` controller simulation.

They act on the swait record behind their device (``gp:userCalc1`` behind
``noisy``), through apstools' ``UserCalcN``: the YAML names PVs and numbers only.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

from ..connect import signals_of, unconnected_pvs
from ..lazy_signals import build_lazy_signals, created_together
from ._common import NUMBER_OR_RANDOM, STRING_FIELD_CHARS, SetupValueError, check_string_field, number, put, put_all

CONNECT_TIMEOUT = 10.0   # bounded; channels of an IOC that just restarted take a few seconds
TEMPERATURE_CALC = "A+max(-D,min(D,(B-A)))+C*(RNDM-0.5)"
SCAN_RATES = ["Passive", "Event", "I/O Intr", "10 second", "5 second", "2 second",
              "1 second", ".5 second", ".2 second", ".1 second"]


def _record_prefix(device, record: str | None) -> str:
    """The swait record behind ``device``: ``record`` if given, else from its PV."""
    if record:
        return record
    pv = getattr(device, "pvname", None) or getattr(device, "prefix", "")
    return pv.split(".")[0]


def _loaded_swait(prefix: str, context) -> Any:
    """The swait record ``prefix`` inside a device of this load (``calcs``), if any."""
    from apstools.synApps import SwaitRecord
    from ophyd import Device
    for device in (getattr(context, "devices", None) or {}).values():
        if not isinstance(device, Device):
            continue
        for _, sub in device.walk_subdevices():
            if isinstance(sub, SwaitRecord) and sub.prefix == prefix:
                return sub
    return None


@contextmanager
def swait_record(prefix: str, name: str, context=None, timeout: float = CONNECT_TIMEOUT,
                 fields: list[str] | None = None) -> Iterator[Any]:
    """The swait record ``prefix`` as apstools' ``UserCalcN``.  The loaded ``calcs``
    device already holds it, connected: borrowing it spares ~60 new channels and
    their connection wait per setup step.  Otherwise a new one, destroyed after.

    ``fields`` (attribute paths, default all) are the ones the caller touches: of a
    ``calcs`` loaded lazily (``load: lazy``), those are made at once, not one by one."""
    loaded = _loaded_swait(prefix, context)
    if loaded is not None:
        build_lazy_signals(loaded, timeout, fields)
        yield loaded
        return
    from apstools.synApps import UserCalcN
    swait = UserCalcN(prefix, name=name)
    try:                        # destroyed also when it never connects: no channels left searching
        try:
            swait.wait_for_connection(timeout=timeout)
        except TimeoutError:    # ophyd lists all ~65 signals: keep the log line to one line
            raise TimeoutError(f"{prefix}: {unconnected_pvs(signals_of(swait))}") from None
        yield swait
    finally:
        swait.destroy()


# -- enable_calcs -------------------------------------------------------------

def enable_calcs(device, enable: bool = True, each: bool = True) -> None:
    """Enable (or disable) a UserCalcsDevice / UserCalcoutDevice and each of its records."""
    value = 1 if enable else 0
    signals = [device.enable]
    if each:
        # asked of the class: on a lazily built record, the instance would make its fields
        records = [attr for attr in device.component_names
                   if attr != "enable" and hasattr(type(getattr(device, attr)), "enable")]
        # made together: lazily built enables (``load: lazy``) connect side by side
        signals += created_together(device, [f"{attr}.enable" for attr in records])
    put_all([(signal, value) for signal in signals])


enable_calcs.options_schema = {
    "type": "object", "additionalProperties": False,
    "properties": {"enable": {"type": "boolean"},
                   "each": {"type": "boolean", "description": "also each record's own Enable PV"}},
}


# -- lorentzian_swait ---------------------------------------------------------

def lorentzian_swait(device, reference: str, center: Any = 0, width: Any = 1, scale: Any = 1,
                     noise: Any = 0.05, record: str | None = None, seed: int | None = None,
                     context=None) -> dict:
    """A noisy Lorentzian of the PV ``reference`` (e.g. ``gp:m1.RBV``), computed by the
    swait record behind ``device`` and processed whenever the reference changes.
    Numbers may be ``{uniform: [lo, hi]}``: drawn at random each load (as the
    training instrument does).  Returns nothing to export; logs the values used."""
    import logging

    from apstools.synApps import setup_lorentzian_swait
    from ophyd import EpicsSignalRO

    rng = random.Random(seed)
    values = {}
    for key, value in dict(center=center, width=width, scale=scale, noise=noise).items():
        try:
            values[key] = number(value, rng)
        except (TypeError, ValueError):
            raise SetupValueError(f"{key} {value!r}: expected a number or {{uniform: [low, high]}}") from None
    prefix = _record_prefix(device, record)
    check_string_field(reference, f"{prefix}.INAN", "reference PV name")   # before anything is written
    with swait_record(prefix, f"{device.name}_swait", context) as swait:
        put(swait.enable, 1)
        ref = EpicsSignalRO(reference, name=f"{device.name}_reference")   # apstools uses its pvname
        setup_lorentzian_swait(swait, ref, **values)
        stored = swait.channels.A.input_pv.get(use_monitor=False)   # round trip: the puts have been taken
        ref.destroy()
        if stored != reference:
            raise SetupValueError(f"{prefix}.INAN holds {stored!r} after writing {reference!r}")
    logging.getLogger(__name__).info("%s: Lorentzian of %s with %s", device.name, reference,
                                     ", ".join(f"{k}={v:.6g}" for k, v in values.items()))
    return {}


lorentzian_swait.options_schema = {
    "type": "object", "additionalProperties": False, "required": ["reference"],
    "properties": {
        "reference": {"type": "string", "pattern": "^[^\\s]+$", "maxLength": STRING_FIELD_CHARS,
                      "description": "PV the peak is a function of, e.g. gp:m1.RBV (an EPICS link field: "
                                     f"at most {STRING_FIELD_CHARS} characters)"},
        "center": NUMBER_OR_RANDOM, "width": NUMBER_OR_RANDOM,
        "scale": NUMBER_OR_RANDOM, "noise": NUMBER_OR_RANDOM,
        "record": {"type": "string", "description": "swait record (default: the device's own PV)"},
        "seed": {"type": "integer", "description": "fix the random draws"},
    },
}


# -- temperature_swait --------------------------------------------------------

def temperature_swait(device, setpoint: float = 25, noise: float = 1, max_change: float = 2,
                      tolerance: float = 1, scan: str = "2 second", record: str | None = None,
                      context=None) -> None:
    """The swait record behind ``device`` as a temperature controller: every ``scan``
    period the readback (VAL) moves towards the setpoint (B) by at most
    ``max_change`` (D), plus ``noise`` (C); ``tolerance`` (E) says when it is there."""
    prefix = _record_prefix(device, record)
    numbers_in = {"setpoint": ("B", setpoint), "noise": ("C", noise),
                  "max_change": ("D", max_change), "tolerance": ("E", tolerance)}
    for option, (letter, value) in numbers_in.items():      # checked before anything is written
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SetupValueError(f"{option} {value!r}: {value!r} is not a number; field "
                                  f"{prefix}.{letter} is numeric (expected a number)")
    with swait_record(prefix, f"{device.name}_swait", context) as swait:
        if scan not in swait.scanning_rate.enum_strs:
            raise SetupValueError(f"scan {scan!r} is not a choice of the menu field {prefix}.SCAN "
                                  f"(expected one of: {', '.join(map(repr, swait.scanning_rate.enum_strs))})")
        swait.reset()
        swait.description.put("temperature")
        put_all([(swait.channels.A.input_pv, f"{prefix}.VAL"),    # the previous value
                 (swait.channels.B.input_value, setpoint),
                 (swait.channels.C.input_value, noise),
                 (swait.channels.D.input_value, max_change),
                 (swait.channels.E.input_value, tolerance),
                 (swait.calculation, TEMPERATURE_CALC),
                 (swait.scanning_rate, scan)])
    tol = getattr(device, "tolerance", None)
    if tol is not None and not hasattr(tol, "pvname"):   # a soft tolerance signal on the positioner
        tol.put(float(tolerance))


temperature_swait.options_schema = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "setpoint": {"type": "number"}, "noise": {"type": "number", "minimum": 0},
        "max_change": {"type": "number", "exclusiveMinimum": 0},
        "tolerance": {"type": "number", "exclusiveMinimum": 0},
        "scan": {"enum": SCAN_RATES, "description": "an EPICS SCAN rate"},
        "record": {"type": "string"},
    },
}
