"""A put whose IOC went away is not reported as completed.

Why: libca answers every put-with-callback still in flight when a circuit
drops with status ``ECA_DISCONN``, and pyepics' handler (``epics.ca._onPutEvent``)
runs the completion callback without looking at the status.  ophyd then marks
the status *done, successfully*: a scaler count cut short by a dying IOC looked
finished, and the plan went on to read devices that were gone (or, had they
cached values, to record a point that was never measured).

How: :func:`install` points ``epics.ca._CB_PUTWAIT`` (the C callback pyepics hands
to ``ca_array_put_callback``, looked up at each put) at a handler that drops such
replies and passes every other one to pyepics.  The put then stays pending: the
session's :class:`loader.watchdog.DisconnectWatchdog` fails the status with the
device's name, and ``caput(wait=True)`` runs into its timeout and reports failure.
``tests/test_faults.py::test_a_count_cut_by_the_ioc_dying_is_not_reported_complete``
fails if pyepics stops using the hook.
"""
from __future__ import annotations

import logging

from epics import ca, dbr

logger = logging.getLogger(__name__)

ECA_DISCONN = 192           # caerr.h: "Virtual circuit disconnect" (the code in the logs' "status code: 192")


def _on_put_event(args, **kwargs) -> None:
    if args.status == ECA_DISCONN:
        completed = args.usr
        logger.debug("a put cut by a disconnect: not completed")
        if completed in ca._put_completes:          # pyepics keeps it alive until it runs
            ca._put_completes.remove(completed)
        return
    _pyepics_put_event(args, **kwargs)


_pyepics_put_event = ca._onPutEvent
_callback = dbr.make_callback(_on_put_event, dbr.event_handler_args)


def install() -> None:
    ca._CB_PUTWAIT = _callback
