"""Build first the devices whose IOC answers: dead entries held the live ones back.

libca doubles the UDP frames it sends per search try only after a try in which
every name it asked for was found; one unanswered name sends it back to one frame
per try (EPICS 7, ``searchTimer::expire``).  A thousand motors built side by
side, a hundred of them on PVs no IOC serves, created their 20,000 channels with
dead names in nearly every try: the live ones connected at ~1,400 a second, done
11.7 s into the load against ~5 s with no dead entry (BENCHMARKS.md).

So before the builds one PV of each device (its first component that is a plain
EPICS signal: ``prefix + suffix``) is searched, and the devices are handed to the
builders as their PV answers; those still silent when no answer has come for
``settle`` seconds go last, their names meeting libca's searches after the live
ones were found.  A device with no such PV (an area detector has sub-devices
only; a device that is not EPICS) goes first, as before.  The probe channel is
the one the device's signal uses later (pyepics keeps one channel per PV name).
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator, Mapping

SETTLE = 0.2        # seconds without a new answer before the silent devices are built
LONGEST = 2.0       # seconds at most before every device is being built
POLL = 0.002        # seconds between two looks at the probes


def probe_pv(item, cls: type) -> str | None:
    """The PV of ``cls``'s first plain EPICS signal component under ``item``'s prefix
    (not a lazy one: the device must need it to connect)."""
    from ophyd.device import Component

    from .instantiate import render_arguments
    from .lazy_signals import _pv_rule
    try:
        args, kwargs = render_arguments(item)
    except Exception:
        return None
    prefix = kwargs.get("prefix", args[0] if args else None)
    if not isinstance(prefix, str):
        return None
    for cpt in getattr(cls, "_sig_attrs", {}).values():
        if (type(cpt) is Component and not cpt.lazy and isinstance(cpt.suffix, str)
                and _pv_rule(cpt.cls) is not None):
            return prefix + cpt.suffix
    return None


def answered_first(items: Iterable, classes: Mapping[str, Any], settle: float = SETTLE,
                   longest: float = LONGEST, silent: dict[str, float] | None = None) -> Iterator:
    """``items`` in build order: without a probe PV, then as their probe answers,
    then the silent ones (after ``settle`` s without an answer, ``longest`` s at most).

    ``silent`` receives name -> ``time.monotonic()`` at which the probe of each
    silent device was sent: the connect wait gives such a device up one timeout
    after that, not one timeout after the live ones stop progressing."""
    from .lazy_signals import PlannedChannel
    probes: dict[str, PlannedChannel] = {}
    sent: dict[str, float] = {}
    waiting = []
    for item in items:
        pv = probe_pv(item, classes[item.device_class])
        if pv is None:
            yield item
            continue
        if pv not in probes:
            probes[pv] = PlannedChannel(pv, item.name)
            probes[pv].open(keep_open=False)    # the device's own signal takes it over
            sent[pv] = time.monotonic()
        waiting.append((item, probes[pv]))
    start = last_answer = time.monotonic()
    while waiting:
        unanswered = []
        for item, probe in waiting:
            if probe.connected:
                yield item
            else:
                unanswered.append((item, probe))
        now = time.monotonic()
        if len(unanswered) < len(waiting):
            last_answer = now
        waiting = unanswered
        if now - last_answer >= settle or now - start >= longest:
            break
        time.sleep(POLL)
    for item, probe in waiting:
        if silent is not None:
            silent[item.name] = sent[probe.pvname]
        yield item
