"""Small helpers shared by the setup actions."""
from __future__ import annotations

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


def number(value: Any, rng: random.Random | None = None) -> float:
    """``value`` itself, or a uniform random number when it is ``{uniform: [lo, hi]}``."""
    if isinstance(value, dict) and "uniform" in value:
        low, high = value["uniform"]
        return (rng or random).uniform(float(low), float(high))
    return float(value)


def put(signal, value, timeout: float = PUT_TIMEOUT) -> None:
    """Write ``value`` and wait (bounded) until the IOC has taken it."""
    signal.set(value, timeout=timeout).wait(timeout=timeout)


def field_signal(device, field: str):
    """The signal of ``device`` on the record field ``field`` (e.g. ``.SREV``)."""
    target = f"{device.prefix}{field}"
    for walk in device.walk_signals(include_lazy=True):
        sig = walk.item
        if getattr(sig, "setpoint_pvname", None) == target or getattr(sig, "pvname", None) == target:
            return sig
    raise LookupError(f"{device.name} ({type(device).__name__}) has no component on {target}")
