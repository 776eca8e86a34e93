"""Positioner mixins: a move is never lost (:class:`MoveDoneGuard`) and never
waited on for ever (:class:`BoundedMove`).

A move requested the moment the previous one finishes is not lost.  Why: ophyd's ``PositionerBase._done_moving`` (motors, PV positioners) runs the
"move finished" subscribers and *then* clears them all.  The RunEngine, woken by
the first step, may already have started the next move in its own thread and
subscribed that move's status in between: the clear removes it, so the next move
completes on the IOC but never in the session, and the plan waits for ever.  A
busy two-core machine hit it between a ``rel_scan``'s reset move and the ``mv``
that followed.

How: :class:`MoveDoneGuard` makes "run the finished subscribers, then clear them"
exclusive with every other use of those subscribers (a new move subscribing its
status, or failing the previous one first), under one re-entrant lock.  A status
subscribed while the previous move is finishing is then added after the clear.
``tests/test_positioner_race.py`` forces that interleaving on a real motor.
"""
from __future__ import annotations

import threading


class MoveDoneGuard:
    """Mixin for ophyd positioners (before the ophyd class in the bases)."""

    def __init__(self, *args, **kwargs):
        self._move_done_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def subscribe(self, callback, event_type=None, run=True):
        if event_type == self._SUB_REQ_DONE:
            with self._move_done_lock:
                return super().subscribe(callback, event_type=event_type, run=run)
        return super().subscribe(callback, event_type=event_type, run=run)

    def _run_subs(self, *args, sub_type, **kwargs):
        if sub_type == self._SUB_REQ_DONE:
            with self._move_done_lock:
                return super()._run_subs(*args, sub_type=sub_type, **kwargs)
        return super()._run_subs(*args, sub_type=sub_type, **kwargs)

    def _reset_sub(self, event_type):
        if event_type == self._SUB_REQ_DONE:
            with self._move_done_lock:
                return super()._reset_sub(event_type)
        return super()._reset_sub(event_type)

    def _done_moving(self, *args, **kwargs):
        with self._move_done_lock:
            return super()._done_moving(*args, **kwargs)


class BoundedMove:
    """Mixin for ophyd positioners: a move given no timeout (in the call or at
    construction) gets ``self.move_time_bound(position)`` seconds, which each
    class computes from its own record's pace (None: no bound).  A move its IOC
    never reports done then fails with ophyd's ``StatusTimeoutError`` (and the
    positioner is told to stop) instead of holding the plan for ever."""

    #: seconds added to the expected move time (settling, a busy IOC)
    move_time_margin: float = 10.0

    def move_time_bound(self, position: float) -> float | None:
        raise NotImplementedError

    def move(self, position, wait: bool = True, timeout: float | None = None, **kwargs):
        if timeout is None and self._timeout is None:
            timeout = self.move_time_bound(position)
        return super().move(position, wait=wait, timeout=timeout, **kwargs)
