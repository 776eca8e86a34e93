"""Plugins from entry points: plans, callbacks, setup actions.

A plugin that fails to import, or is not of the expected kind, is reported and
skipped; it never stops a load (DESIGN.md §5).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from importlib.metadata import EntryPoints, entry_points
from typing import Any, Callable

logger = logging.getLogger(__name__)

PLANS = "loader.plans"
CALLBACKS = "loader.callbacks"
SETUPS = "loader.setups"


@dataclass(frozen=True)
class PluginError:
    """Why one entry point was skipped."""

    group: str
    name: str
    value: str          # "module:attr" as declared
    distribution: str
    reason: str

    def __str__(self) -> str:
        return f"{self.group} entry point {self.name!r} ({self.value}, from {self.distribution}): {self.reason}"


_scan: EntryPoints | None = None
_scan_lock = threading.Lock()


def group_entry_points(group: str) -> EntryPoints:
    """The entry points of ``group``.  Every lookup used to read the metadata of all
    installed distributions (~10 ms each, six times per load); one scan now serves
    until :func:`rescan_entry_points`."""
    global _scan
    with _scan_lock:
        if _scan is None:
            _scan = entry_points()
        return _scan.select(group=group)


def rescan_entry_points() -> None:
    """Forget the scan: the next lookup sees what was installed since (every
    validation does this, and with it every load and reload)."""
    global _scan
    with _scan_lock:
        _scan = None


def load_group(group: str, check: Callable[[Any], str | None] | None = None
               ) -> tuple[dict[str, Any], list[PluginError]]:
    """Load every entry point of ``group``.

    ``check(obj)`` returns ``None`` when ``obj`` is acceptable, else a reason.
    Returns the loaded objects by name and the entry points that were skipped.
    """
    loaded: dict[str, Any] = {}
    errors: list[PluginError] = []
    for ep in sorted(group_entry_points(group), key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", "?")
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not stop the load
            reason = f"import failed: {type(exc).__name__}: {exc}"
        else:
            reason = check(obj) if check else None
            if reason is None:
                if ep.name in loaded and loaded[ep.name] is not obj:
                    reason = "name already provided by another distribution"
                else:
                    loaded[ep.name] = obj
                    continue
        error = PluginError(group, ep.name, ep.value, dist, reason)
        logger.warning("skipped plugin: %s", error)
        errors.append(error)
    return loaded, errors


def must_be_callable(obj: Any) -> str | None:
    """Setup actions and callback factories must be callables."""
    return None if callable(obj) else f"expected a callable, got {type(obj).__name__}"


def must_be_generator_function(obj: Any) -> str | None:
    """Plans must be generator functions (or callables returning a plan)."""
    import inspect
    if inspect.isgeneratorfunction(obj) or (callable(obj) and not inspect.isclass(obj)):
        return None
    return f"expected a plan (generator function), got {type(obj).__name__}"


def callback_problem(made: Any) -> str | None:
    """Why what a callback factory returned cannot be subscribed (``None`` when it can):
    a callable ``(name, doc)``, an object with a callable ``receiver``, or a list of those."""
    for each in made if isinstance(made, (list, tuple)) else [made]:
        receiver = getattr(each, "receiver", each)
        if not callable(receiver):
            return f"the factory returned {type(each).__name__} {each!r}, expected a callback (name, doc) -> None"
    return None
