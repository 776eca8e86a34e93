"""``motor_srev``: the motor record's steps per revolution (sets MRES = UREV/SREV)."""
from __future__ import annotations

import numbers

from ._common import SetupValueError, field_signal, put

options_schema = {
    "type": "object", "additionalProperties": False, "required": ["srev"],
    "properties": {"srev": {"type": "integer", "minimum": 1,
                            "description": "steps per revolution, e.g. 2000 for 0.001 steps with UREV 2"}},
}


def motor_srev(device, srev: int) -> None:
    """Write ``.SREV`` through the device's own component on that field.

    A non-integer is refused rather than rounded: MRES = UREV/SREV would change silently."""
    signal = field_signal(device, ".SREV")
    if isinstance(srev, bool) or not isinstance(srev, numbers.Integral):
        raise SetupValueError(f"srev {srev!r} for field {signal.pvname}: expected an integer "
                              "number of steps per revolution, e.g. 2000")
    put(signal, int(srev))


motor_srev.options_schema = options_schema
