"""Connect every device of a load under one bounded wait.

ophyd starts the Channel Access searches when signals are created, so the
searches of all devices run at the same time; here all devices are watched
against a single deadline.  "Connected" is ophyd's own notion (every signal it
creates eagerly, plus its required first updates): lazy signals -- the
areaDetector plugins' hundreds of PVs in this beamline -- connect on first use,
as ophyd intends (creating them all up front costs ~18 s for ``adsimdet``,
mostly 1 MB image-array reads).  A device the config makes lazy (``load: lazy``)
also waits for the bare channels of its not-yet-built signals
(:mod:`loader.lazy_signals`).
A dead device costs at most one timeout in total, never one per device, and
live devices are not cut off while they are still connecting; a device whose
first PV was searched before the builds and got no answer (:mod:`loader.probe_order`)
is given up one timeout after that search, however long the others take.  (The metadata
behind ``connected`` is fetched in bulk: :mod:`loader.bulk_metadata`.)
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from .lazy_signals import planned_channels

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.02
PROGRESS_SAMPLE = 0.25   # seconds between two counts of connected signals
REPORT_AFTER = 2.0       # seconds of waiting before the user is told what is awaited
REPORT_EVERY = 5.0       # and between two such lines


def signals_of(obj) -> list:
    """The signals ophyd made when ``obj`` was built (lazy ones only once touched)."""
    from ophyd import Device
    if isinstance(obj, Device):
        return [walk.item for walk in obj.walk_signals(include_lazy=False)]
    return [obj] if hasattr(obj, "connected") else []


def devices_of(obj) -> list:
    """``obj`` and the sub-devices ophyd has built (lazy ones only once touched);
    ``[]`` for what is not an ophyd Device."""
    from ophyd import Device
    if not isinstance(obj, Device):
        return []
    return [obj] + [dev for _, dev in obj.walk_subdevices(include_lazy=False)]


def _pending_of(obj) -> list[dict]:
    return [getattr(dev, "_required_for_connection", {}) for dev in devices_of(obj)]


def _first_unconnected(signals: list, start: int) -> int:
    """Index of the first signal not connected, looking from ``start``.

    Why: the wait looks at every waiting device 50 times a second, and a device
    of 20 signals waiting for its last one had its 19 connected ones looked at
    each time (1000 motors: ~0.2 s of the load's CPU).  Signals that were
    connected are not looked at again until all are; then all are, once."""
    end = len(signals)
    while start < end and signals[start].connected:
        start += 1
    return start


def summarize_pvs(names: list[str], shown: int = 5) -> str:
    """``a, b, c and 12 more``: a reason line that stays one line for a big device."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def unconnected_pvs(signals: list) -> str:
    """``3 of 60 PVs not connected (a, b, c)``, or "" when all are connected."""
    missing = [getattr(sig, "pvname", None) or sig.name for sig in signals if not sig.connected]
    return f"{len(missing)} of {len(signals)} PVs not connected ({summarize_pvs(missing)})" if missing else ""


def monitor_backlog() -> int | None:
    """How many callbacks ophyd's one monitor thread has queued (None: unknown).
    A device waiting for its first updates behind a long queue is held up by this
    process, not by its IOC."""
    try:
        from ophyd import _pyepics_shim as shim
        return shim.get_dispatcher().threads["monitor"].queue.qsize()
    except Exception:
        return None


def timed_out(timeout: float, detail: str) -> str:
    """The reason a device that did not connect in the load's wait is given."""
    return f"connection timed out after {timeout:g} s: {detail}"


def _unconnected_reason(signals: list, pending: list[dict]) -> str:
    parts = []
    missing = unconnected_pvs(signals)
    if missing:
        parts.append(missing)
    if any(pending):
        backlog = monitor_backlog()
        parts.append("waiting for the first monitor updates"
                     + (f" (ophyd's monitor thread is {backlog} callbacks behind)" if backlog else ""))
    return "; ".join(parts) or "not connected"


def connect_all(devices: Mapping[str, Any], timeout: float,
                times: dict[str, float] | None = None,
                configured_timeout: float | None = None,
                patience: float | None = None, hard_limit: float | None = None,
                report_after: float = REPORT_AFTER,
                searched_since: Mapping[str, float] | None = None) -> dict[str, str | None]:
    """Wait for all ``devices`` to connect: at most ``timeout`` s, extended while
    their signals keep connecting.

    Building and connecting thousands of signals is CPU work that can outlast a
    timeout meant for unreachable IOCs.  So whenever more signals are connected
    than at the last look (every ``PROGRESS_SAMPLE`` s; at the first look: devices
    still waiting have signals that connected while they were built), the deadline
    moves to at least ``patience`` s (default: the configured timeout) from then, up to
    ``hard_limit`` s in all (default ten timeouts): live devices are never cut
    off while they progress, and dead ones still cost one wait after the last
    progress, never one per device.

    ``searched_since`` (name -> ``time.monotonic()`` of the first search for one of
    its PVs, which went unanswered: ``build_all``'s ``silent``) gives such a device
    up ``configured_timeout`` s after that search if none of its signals has
    connected by then, without waiting for the others to stop progressing: in a
    thousand-motor load the live ones connect for longer than a timeout, and a
    dead entry added a whole timeout after them (1000 motors, 10 % dead, timeout
    5 s: ~11 s against ~5.5 s with none dead).

    A wait longer than ``report_after`` s says which devices it is waiting for and
    when it gives up on them (then every ``REPORT_EVERY`` s): an IOC that is down
    otherwise shows as a silent pause of a whole timeout.

    Returns name -> ``None`` (connected) or the reason it did not.  When ``times``
    is given it receives name -> seconds until that device was connected.
    ``configured_timeout`` is the load's whole connection timeout, named in the
    reasons (``timeout`` is what is left of it after the devices were built).
    """
    t0 = time.monotonic()
    shown = timeout if configured_timeout is None else configured_timeout
    patience = shown if patience is None else patience
    hard_deadline = t0 + (10 * shown if hard_limit is None else hard_limit)
    watched = {}
    result: dict[str, str | None] = {}
    for name, obj in devices.items():
        try:
            watched[name] = (signals_of(obj) + planned_channels(obj), _pending_of(obj))
        except Exception as exc:
            result[name] = f"{type(exc).__name__}: {exc}"
    deadline = t0 + max(timeout, PROGRESS_SAMPLE)     # time for one look at progress
    give_up_at = {name: at + shown for name, at in (searched_since or {}).items() if name in watched}
    waiting = dict(watched)
    checked = dict.fromkeys(watched, 0)    # signals seen connected, from the front (_first_unconnected)
    signals_done = 0
    last_count, next_sample, next_report = None, t0, t0 + report_after
    while waiting:
        now = time.monotonic()
        ready = []
        for name, (sigs, pend) in waiting.items():
            checked[name] = _first_unconnected(sigs, checked[name])
            if checked[name] == len(sigs) and not any(pend):
                if all(sig.connected for sig in sigs):     # none lost since it was seen
                    ready.append(name)
                else:
                    checked[name] = 0
        for name in ready:
            result[name] = None
            if times is not None:
                times[name] = now - t0
            signals_done += len(waiting.pop(name)[0])
        for name in [name for name, at in give_up_at.items() if now >= at]:
            del give_up_at[name]            # looked at once: a device with a signal connected stays
            if name in waiting and not any(sig.connected for sig in waiting[name][0]):
                result[name] = timed_out(shown, _unconnected_reason(*waiting.pop(name)))
                if times is not None:
                    times[name] = now - t0
        if waiting and now >= next_sample:
            still = sum(sig.connected for sigs, _ in waiting.values() for sig in sigs)
            count = signals_done + still
            # progress: more signals than at the last look; at the first look, signals
            # of unfinished devices that connected while devices were being built
            # (building thousands of signals can use up the whole timeout)
            progressed = still > 0 if last_count is None else count > last_count
            if progressed:
                deadline = min(max(deadline, now + patience), hard_deadline)
            last_count, next_sample = count, now + PROGRESS_SAMPLE
            logger.debug("connect: %d signals connected, %d devices waiting, %.2f s left",
                         count, len(waiting), deadline - now)
        if not waiting or now >= deadline:
            break
        if now >= next_report:
            logger.info("connecting: %d of %d devices connected; waiting for %s "
                        "(giving up in %.0f s unless they progress)",
                        len(devices) - len(waiting), len(devices),
                        summarize_pvs(sorted(waiting)), deadline - now)
            next_report = now + REPORT_EVERY
        time.sleep(POLL_INTERVAL)   # bounded polling, as ophyd's own wait_for_connection does
    for name, (sigs, pend) in waiting.items():
        result[name] = timed_out(shown, _unconnected_reason(sigs, pend))
        if times is not None:
            times[name] = time.monotonic() - t0
    return {name: result[name] for name in devices}
