"""A move requested the moment the previous one finishes is not lost.

Why: ophyd's ``PositionerBase._done_moving`` (motors, PV positioners) runs the
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
