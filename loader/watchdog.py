"""Fail what the RunEngine waits on when the IOC behind it goes away.

An ophyd status (a motor move, a scaler count, a put with completion) is
finished only by its IOC: DMOV back to 1, CNT back to Done, the put callback.
If the IOC dies in the middle, nothing ever finishes it and the RunEngine waits
forever.  :class:`DisconnectWatchdog` is the session RunEngine's
``waiting_hook``: bluesky hands it every status it starts to wait on; the
watchdog watches the Channel Access connections of the device behind each one
and, when one drops (or is already down), fails that status with
``DisconnectedError``.  The plan then ends with :class:`IocConnectionLost`
(a ``FailedStatus`` and a ``DisconnectedError`` that names the device and its
PVs) and the run is closed with exit status
``fail``, as for any other failed status.

Another waiting hook (the shell's progress bars) is chained, not replaced:
use :func:`set_waiting_hook`.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, Iterable

from bluesky.utils import FailedStatus
from ophyd.utils import DisconnectedError
from .connect import signals_of, summarize_pvs

logger = logging.getLogger(__name__)

SHOWN_PVS = 3


def _status_objects(status, depth: int = 0) -> Iterable[Any]:
    """The ophyd objects a status belongs to (both sides of an ``AndStatus``)."""
    if depth > 20:
        return
    for side in ("left", "right"):
        inner = getattr(status, side, None)
        if inner is not None and hasattr(inner, "add_callback"):
            yield from _status_objects(inner, depth + 1)
    for attr in ("pos", "device", "obj"):
        obj = getattr(status, attr, None)
        if obj is not None:
            yield obj
            return


def _root(obj):
    while getattr(obj, "parent", None) is not None:
        obj = obj.parent
    return obj


def _ca_signals(obj) -> list:
    """The connected-on-creation Channel Access signals of ``obj``'s top device."""
    return [sig for sig in signals_of(_root(obj)) if getattr(sig, "pvname", None)]


class IocConnectionLost(FailedStatus, DisconnectedError):
    """A status failed because its device lost the connection to its IOC."""


def explain_disconnects(plan):
    """RunEngine preprocessor: a status the watchdog failed ends the plan with
    :class:`IocConnectionLost` (its message, not the status's repr, is the
    exception the user sees)."""
    try:
        return (yield from plan)
    except FailedStatus as exc:
        cause = exc.__cause__
        if isinstance(cause, DisconnectedError) and not isinstance(exc, IocConnectionLost):
            raise IocConnectionLost(str(cause)) from exc
        raise


class DisconnectWatchdog:
    """RunEngine ``waiting_hook`` that fails statuses whose device lost its IOC."""

    def __init__(self, chained: Callable | None = None) -> None:
        self.chained = chained
        self.failed: list[str] = []                  # messages of the statuses it failed
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[Any, Any, set[int]]] = {}   # id(status) -> (status, owner, signal ids)
        self._watched: weakref.WeakSet = weakref.WeakSet()

    # bluesky calls this with the statuses it waits on, then with None
    def __call__(self, status_objs) -> None:
        if self.chained is not None:
            try:
                self.chained(status_objs)
            except Exception:
                logger.exception("waiting hook %r failed", self.chained)
        if not status_objs:
            return
        to_fail = []
        with self._lock:
            self._prune()
            for status in status_objs:
                if getattr(status, "done", True):
                    continue
                signals, owner = [], None
                for obj in _status_objects(status):
                    owner = owner or _root(obj)
                    try:
                        signals += _ca_signals(obj)
                    except Exception:
                        logger.debug("cannot list the signals of %r", obj, exc_info=True)
                if not signals:
                    continue
                for sig in signals:
                    if sig not in self._watched:
                        sig.subscribe(self._on_meta, event_type=sig.SUB_META, run=False)
                        self._watched.add(sig)
                self._waiting[id(status)] = (status, owner, {id(s) for s in signals})
                dead = [sig for sig in signals if not sig.connected]
                if dead:
                    to_fail.append((status, owner, dead))
        for status, owner, dead in to_fail:
            self._fail(status, owner, dead)

    def _prune(self) -> None:
        for key in [k for k, (st, _, _) in self._waiting.items() if st.done]:
            del self._waiting[key]

    def _on_meta(self, *, obj=None, connected=None, **kwargs) -> None:
        if connected is not False or obj is None:
            return
        with self._lock:
            self._prune()
            hit = [(st, owner) for st, owner, ids in self._waiting.values() if id(obj) in ids]
        for status, owner in hit:
            self._fail(status, owner, [obj])

    def _fail(self, status, owner, dead) -> None:
        name = getattr(owner, "name", None) or repr(owner)
        pvs = summarize_pvs([sig.pvname for sig in dead], SHOWN_PVS)
        message = (f"{name}: lost the connection to its IOC ({pvs} disconnected) "
                   "while the RunEngine was waiting for it")
        try:
            status.set_exception(DisconnectedError(message))
        except Exception:      # finished meanwhile (InvalidState)
            return
        self.failed.append(message)
        logger.error("%s", message)


def set_waiting_hook(RE, hook: Callable | None) -> None:
    """Give ``RE`` another waiting hook (progress bars, ...) behind its watchdog."""
    current = getattr(RE, "waiting_hook", None)
    if isinstance(current, DisconnectWatchdog):
        current.chained = hook
    else:
        RE.waiting_hook = hook


def install(RE) -> DisconnectWatchdog:
    """Make a :class:`DisconnectWatchdog` ``RE``'s waiting hook (chaining any hook it had)."""
    current = getattr(RE, "waiting_hook", None)
    if isinstance(current, DisconnectWatchdog):
        return current
    RE.waiting_hook = DisconnectWatchdog(chained=current)
    if explain_disconnects not in RE.preprocessors:
        RE.preprocessors.append(explain_disconnects)
    return RE.waiting_hook
