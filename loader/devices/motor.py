"""Motor device classes used by the beamline configuration."""
from __future__ import annotations

from ophyd import Component, EpicsMotor, EpicsSignal

from .positioner import MoveDoneGuard


class EpicsMotorWithSREV(MoveDoneGuard, EpicsMotor):
    """``ophyd.EpicsMotor`` plus the record's SREV (steps per revolution).

    The training beamline sets the step size (MRES = UREV/SREV) per motor,
    e.g. SREV=2000 on ``m1`` for 0.001 steps; this component makes that a
    configuration value that setup actions can write and runs can record.
    A move asked for as the previous one finishes is never lost (:class:`MoveDoneGuard`).
    """

    steps_per_revolution = Component(EpicsSignal, ".SREV", kind="config", auto_monitor=True)
