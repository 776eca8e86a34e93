"""Motor device classes used by the beamline configuration."""
from __future__ import annotations

import logging

from ophyd import Component, EpicsMotor, EpicsSignal

from .positioner import BoundedMove, MoveDoneGuard

logger = logging.getLogger(__name__)


class EpicsMotorWithSREV(BoundedMove, MoveDoneGuard, EpicsMotor):
    """``ophyd.EpicsMotor`` plus the record's SREV (steps per revolution).

    The training beamline sets the step size (MRES = UREV/SREV) per motor,
    e.g. SREV=2000 on ``m1`` for 0.001 steps; this component makes that a
    configuration value that setup actions can write and runs can record.
    A move asked for as the previous one finishes is never lost (:class:`MoveDoneGuard`).

    A move given no timeout is bounded (:class:`BoundedMove`) by the record's own
    speed: a motor whose IOC never reports the move done (hung, or a stalled
    axis) fails the move instead of holding the plan for ever.
    """

    steps_per_revolution = Component(EpicsSignal, ".SREV", kind="config", auto_monitor=True)

    def move_time_bound(self, position: float) -> float | None:
        """At most how long a move to ``position`` may take: twice distance/VELO
        plus both ramps (ACCL), plus :attr:`move_time_margin`; None when the record
        cannot tell (not connected, VELO 0)."""
        try:
            velocity = float(self.velocity.get())
            ramp = float(self.acceleration.get())
            distance = abs(float(position) - float(self.user_readback.get()))
        except Exception as exc:     # disconnected: ophyd's own move says so
            logger.debug("%s: no time bound for the move (%s)", self.name, exc)
            return None
        if velocity <= 0:
            return None
        return 2.0 * (distance / velocity + 2.0 * max(ramp, 0.0)) + self.move_time_margin
