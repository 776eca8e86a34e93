"""Build device objects from happi items (classes already imported, up front).

Arguments come from the entry's ``args``/``kwargs`` with ``{{field}}``
placeholders filled by :mod:`loader.templates` (never by a Jinja environment).
The happi item is attached as ``obj.md``, as happi's own loader does.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Container, Iterable, Iterator, Mapping

from . import templates
from .connect import REPORT_AFTER, REPORT_EVERY, devices_of
from .lazy_signals import lazy_class
from .probe_order import answered_first

logger = logging.getLogger(__name__)

RETRY_INTERVAL = 0.5    # seconds between attempts of a constructor that timed out


def render_arguments(item) -> tuple[list, dict]:
    """The constructor's ``(args, kwargs)`` for a happi item."""
    fields = item.post()
    args = templates.fill(list(item.args or []), fields)
    kwargs = templates.fill(dict(item.kwargs or {}), fields)
    return args, kwargs


def instantiate(item, cls) -> Any:
    """``cls(*args, **kwargs)`` for ``item``; the item is kept on the object as ``md``."""
    args, kwargs = render_arguments(item)
    obj = cls(*args, **kwargs)
    try:
        obj.md = item
    except Exception:   # objects that refuse attributes are still usable
        pass
    return obj


def _unreachable_errors() -> tuple[type, ...]:
    """What a constructor raises when it cannot read its PVs: not connected yet
    (``TimeoutError``), or its IOC went away after this process had connected to it
    (ophyd's ``DisconnectedError``, pyepics' ``ChannelAccessGetFailure``, or its
    ``CASeverityException`` "Virtual circuit disconnect" for a get in flight)."""
    errors: list[type] = [TimeoutError]
    try:
        from ophyd.utils import DisconnectedError
        errors.append(DisconnectedError)
    except ImportError:
        pass
    try:
        from epics.ca import CASeverityException, ChannelAccessException, ChannelAccessGetFailure
        errors += [ChannelAccessGetFailure, ChannelAccessException, CASeverityException]
    except ImportError:
        pass
    return tuple(errors)


def instantiate_until(item, cls, deadline: float) -> tuple[Any, str | None]:
    """Retry a constructor that reads PVs (``ScalerCH`` reads its channel names) until
    it succeeds or ``deadline`` (``time.monotonic()``) passes: (object or None, error)."""
    error = "constructor could not read its PVs"
    unreachable = _unreachable_errors()
    while True:
        try:
            return instantiate(item, cls), None
        except unreachable as exc:
            error = f"{type(exc).__name__}: {exc}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, error
            # rate limit: building a large device is CPU work that would starve the other connections
            time.sleep(min(RETRY_INTERVAL, remaining))
        except Exception as exc:
            return None, f"construction failed: {type(exc).__name__}: {exc}"


_lazy_lock = threading.Lock()
_lazy_builds = 0
_lazy_wait_before = True        # ophyd's setting when the outermost build began


@contextmanager
def lazy_components_connect_later() -> Iterator[None]:
    """ophyd waits for a lazy component to connect when it is first touched, up to
    10 s per component (``Device.lazy_wait_for_connection``), and constructors touch
    some (``SingleTrigger`` takes ``cam.acquire``; ours sets ``hdf1``'s paths): with
    an IOC slow to answer, a constructor sat 10 s past the load's deadline.  While
    devices are built they are made without that wait; the load's one bounded
    connection wait covers them (they are instantiated, so it sees their signals)."""
    global _lazy_builds, _lazy_wait_before
    from ophyd import Device
    with _lazy_lock:
        if not _lazy_builds:
            _lazy_wait_before = Device.lazy_wait_for_connection
        _lazy_builds += 1
        Device.lazy_wait_for_connection = False
    try:
        yield
    finally:
        with _lazy_lock:
            _lazy_builds -= 1
            if not _lazy_builds:
                Device.lazy_wait_for_connection = _lazy_wait_before


def keep_ophyd_lazy_waits(obj) -> None:
    """Undo what :func:`lazy_components_connect_later` leaves on the built devices.

    ophyd's ``Device.__init__`` sets ``lazy_wait_for_connection`` on the instance
    while it makes its components, then puts back the value it found: during a
    load that is our ``False``, and each device kept it.  A lazy component touched
    after the load (an area detector's ``cam.acquire_time``) then came back not yet
    connected, its ``enum_strs``, limits and precision still ``None``.  The
    instance value goes; the class value (ophyd's ``True``) shows again.
    """
    for device in devices_of(obj):
        if device.__dict__.get("lazy_wait_for_connection") is False:
            del device.__dict__["lazy_wait_for_connection"]


def build_all(items: Iterable, classes: Mapping[str, Any], deadline: float, workers: int = 8,
              report_after: float = REPORT_AFTER, after_build: Callable[[Any], Any] | None = None,
              lazy: Container[str] = (), silent: dict[str, float] | None = None
              ) -> tuple[dict[str, Any], dict[str, str], dict[str, str], dict[str, float]]:
    """Construct every item side by side in a small thread pool.

    Most constructors only create signals (CPU work, serialised by the GIL
    anyway), but some read PVs while they are built (``ScalerCH`` its 32
    channel names, area detectors their plugin types): built one after another
    they would add up; here the load waits for the slowest of them.

    A build longer than ``report_after`` s says how far it is (then every
    ``REPORT_EVERY`` s): a thousand motors take seconds of CPU.

    ``after_build(obj)`` runs as soon as an object is made, in the thread that made
    it, while other devices are still being built (its failure is logged, not fatal).

    Items named in ``lazy`` are built from :func:`loader.lazy_signals.lazy_class`.

    Devices whose first PV answers are built first (:mod:`loader.probe_order`);
    ``silent`` receives the others' names with the time their PV was first searched.

    Returns ``(objects, construction errors, constructors still waiting on their
    PVs at the deadline, seconds per item)``.
    """
    items = list(items)
    built: dict[str, Any] = {}
    failed: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    seconds: dict[str, float] = {}
    if not items:
        return built, failed, unreachable, seconds

    def build(item):
        t0 = time.monotonic()
        cls = classes[item.device_class]
        obj, error = instantiate_until(item, lazy_class(cls) if item.name in lazy else cls, deadline)
        if obj is not None:
            keep_ophyd_lazy_waits(obj)
        if obj is not None and after_build is not None:
            try:
                after_build(obj)
            except Exception:
                logger.exception("%s: adapting the device after it was built failed", item.name)
        return item, obj, error, time.monotonic() - t0

    with lazy_components_connect_later(), ThreadPoolExecutor(
            max_workers=max(1, min(workers, len(items))), thread_name_prefix="construct") as pool:
        next_report = time.monotonic() + report_after
        for done, (item, obj, error, took) in enumerate(pool.map(build, answered_first(items, classes, silent=silent)), 1):
            seconds[item.name] = took
            now = time.monotonic()
            if done < len(items) and now >= next_report:
                logger.info("building: %d of %d devices built", done, len(items))
                next_report = now + REPORT_EVERY
            if obj is not None:
                built[item.name] = obj
            elif error.startswith("construction failed: "):
                failed[item.name] = error.split(": ", 1)[1]
            else:
                unreachable[item.name] = error
    return built, failed, unreachable, seconds
