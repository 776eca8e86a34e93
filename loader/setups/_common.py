"""Small helpers shared by the setup actions."""
from __future__ import annotations

import numbers
import random
from typing import Any

IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"

#: JSON Schema of a number option that may be drawn at random: ``3`` or ``{uniform: [lo, hi]}``.
NUMBER_OR_RANDOM = {
    "oneOf": [
        {"type": "number"},
        {"type": "object", "additionalProperties": False, "required": ["uniform"],
         "properties": {"uniform": {"type": "array", "minItems": 2, "maxItems": 2,
                                    "items": {"type": "number"}}}},
    ],
    "description": "a number, or {uniform: [low, high]} for a random one",
}

PUT_TIMEOUT = 5.0

#: An EPICS STRING field (DBF_STRING, e.g. a swait INAN link or a scaler NMn) holds
#: 40 bytes including the terminating NUL: at most 39 characters survive a put.
STRING_FIELD_CHARS = 39


class SetupValueError(ValueError):
    """A setup option cannot be written to its EPICS field as given (never truncated or coerced)."""


def number(value: Any, rng: random.Random | None = None) -> float:
    """``value`` itself, or a uniform random number when it is ``{uniform: [lo, hi]}``."""
    if isinstance(value, dict) and "uniform" in value:
        low, high = value["uniform"]
        return (rng or random).uniform(float(low), float(high))
    return float(value)


def check_string_field(value: str, pvname: str, what: str = "value") -> None:
    """Refuse a string an EPICS STRING field would silently cut short."""
    size = len(str(value).encode("utf-8"))
    if size > STRING_FIELD_CHARS:
        raise SetupValueError(
            f"{what} {value!r} is {size} characters, too long for the EPICS STRING field "
            f"{pvname} (expected at most {STRING_FIELD_CHARS} characters); not written")


def checked(signal, value):
    """``value`` if ``signal``'s field can hold it unchanged, else ``SetupValueError``.

    Numbers for numeric fields, enum strings from the record's menu, and strings
    that fit a STRING field: anything else would be refused or truncated by CA.
    """
    pvname = getattr(signal, "setpoint_pvname", None) or getattr(signal, "pvname", signal.name)
    enum_strs = getattr(signal, "enum_strs", None)
    if enum_strs and isinstance(value, str):
        if value not in enum_strs:
            raise SetupValueError(f"{value!r} is not a choice of the menu field {pvname} "
                                  f"(expected one of: {', '.join(map(repr, enum_strs))})")
        return value
    current = signal.get()
    if isinstance(current, str):
        check_string_field(value, pvname)
        return value
    if isinstance(current, (bool, int, float, numbers.Number)) and not isinstance(value, numbers.Number):
        raise SetupValueError(f"{value!r} is not a number; field {pvname} is numeric "
                              f"(expected a {'integer' if isinstance(current, numbers.Integral) else 'number'})")
    return value


def put(signal, value, timeout: float = PUT_TIMEOUT) -> None:
    """Write ``value`` (checked against the field first) and wait (bounded) until the IOC has taken it."""
    if hasattr(signal, "wait_for_connection"):
        signal.wait_for_connection(timeout=timeout)   # its enum strings and type are known from here on
    signal.set(checked(signal, value), timeout=timeout).wait(timeout=timeout)


def field_signal(device, field: str):
    """The signal of ``device`` on the record field ``field`` (e.g. ``.SREV``)."""
    target = f"{device.prefix}{field}"
    for walk in device.walk_signals(include_lazy=True):
        sig = walk.item
        if getattr(sig, "setpoint_pvname", None) == target or getattr(sig, "pvname", None) == target:
            return sig
    raise LookupError(f"{device.name} ({type(device).__name__}) has no component on {target}")
