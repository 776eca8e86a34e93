"""``motor_srev``: the motor record's steps per revolution (sets MRES = UREV/SREV)."""
from __future__ import annotations

from ._common import field_signal, put

options_schema = {
    "type": "object", "additionalProperties": False, "required": ["srev"],
    "properties": {"srev": {"type": "integer", "minimum": 1,
                            "description": "steps per revolution, e.g. 2000 for 0.001 steps with UREV 2"}},
}


def motor_srev(device, srev: int) -> None:
    """Write ``.SREV`` through the device's own component on that field."""
    put(field_signal(device, ".SREV"), int(srev))


motor_srev.options_schema = options_schema
