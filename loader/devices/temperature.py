"""The simulated temperature controller on a swait record (``gp:userCalc8``), as a positioner.

The swait record walks its readback (``.VAL``) towards the setpoint (``.B``) by at
most ``.D`` per scan, with noise ``.C``.  A move is done when the readback is
within ``.E`` (tolerance) of the setpoint, so ``temperature`` works both as a
detector and, in plans, like a motor.  A move given no timeout is bounded by the
record's own pace (:class:`~loader.devices.positioner.BoundedMove`,
:meth:`SwaitTemperature.move_time_bound`): one that never settles fails instead of
holding the plan for ever.
"""
from __future__ import annotations

import math
import threading

from ophyd import Component, EpicsSignal, PVPositioner, Signal

from .positioner import BoundedMove, MoveDoneGuard


class SwaitTemperature(BoundedMove, MoveDoneGuard, PVPositioner):
    """Temperature positioner: setpoint ``.B``, readback ``.VAL``, done within ``.E``."""

    readback = Component(EpicsSignal, ".VAL", kind="hinted")
    setpoint = Component(EpicsSignal, ".B", kind="hinted")
    done = Component(Signal, value=True, kind="omitted")
    done_value = True

    calculation = Component(EpicsSignal, ".CALC", kind="config")
    description = Component(EpicsSignal, ".DESC", kind="config")
    max_change = Component(EpicsSignal, ".D", kind="config")
    noise = Component(EpicsSignal, ".C", kind="config")
    previous_value_pv = Component(EpicsSignal, ".INAN", kind="config", string=True)
    scanning_rate = Component(EpicsSignal, ".SCAN", kind="config", string=True)
    # monitored: the done-check reads it at every readback update (see _update_done)
    tolerance = Component(EpicsSignal, ".E", kind="config", auto_monitor=True)

    # ophyd takes a class's required-for-connection methods from its own body only
    # (see loader/connection_requirements.py): named here, the first readback is part
    # of "connected", so a load never returns a temperature whose position is None.
    # (PVPositioner's other one, _move_changed, runs only when "done" first changes.)
    _pos_changed = PVPositioner._pos_changed

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.readback.name = self.name          # the reading is called "temperature"
        self._target = None      # the setpoint the done-check compares with
        self._commanded = None   # the target of the move under way, until it is done
        self._last_readback = None   # as the last readback monitor gave it
        self._last_tolerance = None  # as the last tolerance monitor gave it
        # a monitor's done-check (old target) must not straddle a new move's
        # "not done": it would finish the new move at once, far from its target
        self._done_lock = threading.RLock()
        self.readback.subscribe(self._update_done, run=False)
        self.setpoint.subscribe(self._setpoint_changed, run=False)
        self.tolerance.subscribe(self._tolerance_changed, run=False)

    @property
    def inposition(self) -> bool:
        """True when the readback is within tolerance of the setpoint."""
        target = self.setpoint.get() if self._target is None else self._target
        return self._within_tolerance(self.readback.get(), target, self.tolerance.get())

    @staticmethod
    def _within_tolerance(readback: float, target: float, tolerance: float) -> bool:
        return abs(readback - target) <= tolerance

    def _setpoint_changed(self, value=None, **kwargs) -> None:
        with self._done_lock:
            if self._commanded is not None and value != self._commanded:
                return       # an older setpoint's monitor, delivered late: the move's target stands
            self._target = value
            self._update_done()

    def _tolerance_changed(self, value=None, **kwargs) -> None:
        with self._done_lock:
            self._last_tolerance = value
            self._update_done()

    def _update_done(self, value=None, **kwargs) -> None:
        """The done-check, at every readback (``value``), setpoint and tolerance
        monitor.  It runs on ophyd's one monitor thread, so it reads nothing over
        Channel Access: a round trip there holds every device's monitors, a whole
        timeout while the IOC does not answer.  The readback, target and tolerance
        are the values their monitors brought.  (The tolerance's ``get()`` is a
        Channel Access read until ophyd has its metadata, which may come after its
        first update: seen in a load against an IOC that answers in bursts.)"""
        with self._done_lock:
            if value is not None:
                self._last_readback = value
            if self._last_readback is None or self._target is None or self._last_tolerance is None:
                return       # the last of the three first monitors checks
            in_position = self._within_tolerance(self._last_readback, self._target, self._last_tolerance)
            if in_position and self._commanded is not None:
                self._commanded = None
            if in_position != self.done.get():
                self.done.put(in_position)

    def move_time_bound(self, position: float) -> float | None:
        """At most how long reaching ``position`` may take: twice the scans it needs
        at ``.D`` per scan (one more to settle), at the record's scan period, plus
        :attr:`move_time_margin`; None when the record does not scan periodically."""
        try:
            period = float(str(self.scanning_rate.get()).split()[0])    # ".1 second"
            step = abs(float(self.max_change.get()))
            distance = abs(float(position) - float(self.readback.get()))
        except Exception:      # "Passive", "I/O Intr", or not connected
            return None
        if step <= 0 or period <= 0:
            return None
        return 2.0 * (math.ceil(distance / step) + 1) * period + self.move_time_margin

    def stop(self, *, success: bool = False) -> None:
        """A stopped (or timed-out) move no longer holds the target."""
        with self._done_lock:
            self._commanded = None
        super().stop(success=success)

    def _setup_move(self, position) -> None:
        with self._done_lock:
            self._target = self._commanded = position
            self.done.put(False)     # a move always goes not-done -> done, even when already there
        super()._setup_move(position)
