"""Motor device classes used by the beamline configuration."""
from __future__ import annotations

import logging

from ophyd import Component, EpicsMotor, EpicsSignal
from ophyd.signal import UNSET_VALUE

from .positioner import BoundedMove, MoveDoneGuard

logger = logging.getLogger(__name__)

#: ophyd's own limit callback (``EpicsMotor.__init__``), which this module replaces
OPHYD_LIMIT_CALLBACK = "EpicsMotor.__init__.<locals>.on_limit_changed"


def fetch_limits_aside(motor: EpicsMotor) -> bool:
    """Replace ophyd's limit callbacks on ``motor`` by ones that fetch VAL's control
    limits without holding up ophyd's monitor thread (see :class:`LimitsFetchedAside`).
    False when ``motor`` has none of ophyd's (already replaced, or an ophyd that
    renamed it: then its own callback stays, and ``tests/test_gp_motor.py`` fails)."""
    aside = None
    for limit in (motor.low_limit_travel, motor.high_limit_travel):
        ophyds = [cid for cid, callback in limit._unwrapped_callbacks[limit.SUB_VALUE].items()
                  if getattr(callback, "__qualname__", "") == OPHYD_LIMIT_CALLBACK]
        for cid in ophyds:
            limit.unsubscribe(cid)
        if ophyds:
            aside = aside or _LimitsAside(motor)
            limit.subscribe(aside.limit_changed, run=False)
    return aside is not None


class _LimitsAside:
    """The replacement callbacks of one motor."""

    def __init__(self, motor: EpicsMotor):
        self.motor = motor

    def limit_changed(self, value=None, old_value=None, **kwargs) -> None:
        if old_value is None or old_value is UNSET_VALUE or value == old_value or not self.motor.connected:
            return
        self.motor.user_setpoint._read_pv.get_all_metadata_callback(self.arrived, timeout=10)

    def arrived(self, pvname: str, metadata: dict) -> None:
        self.motor.user_setpoint._metadata_changed(pvname, metadata, from_monitor=True, update=True)


class LimitsFetchedAside:
    """Mixin for ``ophyd.EpicsMotor``: when HLM or LLM changes, VAL's control limits
    are fetched without holding up ophyd's monitor thread.

    Why: ophyd's callback makes a blocking CTRL get of VAL on that thread, the one
    that delivers every monitor update of the session; and as ophyd marks "no value
    yet" with a sentinel (``UNSET_VALUE``), not ``None``, its ``old_value is not
    None`` test does not skip the first update, so it ran for motors that connected
    before their limit's first update.  Loading 1000 motors, those gets waited
    behind the IOC's backlog (about 1 s each) and left 36,000 updates queued when
    the load returned.  Here the first update is skipped (the limits came with the
    metadata at connection), and a real change asks for VAL's CTRL fields through
    the PV's own metadata request, answered on a utility thread.  A load does the
    same for motors of any class (:func:`fetch_limits_aside`, from its build hook);
    this mixin is for motors built outside a load.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fetch_limits_aside(self)


class EpicsMotorWithSREV(BoundedMove, MoveDoneGuard, LimitsFetchedAside, EpicsMotor):
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
