"""Callbacks the session subscribes to its RunEngine, found through the
``loader.callbacks`` entry points and chosen in the YAML's ``callbacks`` list.

Each factory is ``factory(beamline, **options)`` and returns a callback (or a
list of them).  The session subscribes every one through :func:`guarded`, so a
callback that raises is logged and the run goes on: one misbehaving writer never
stops a scan or keeps the others (the catalog writer above all) from their data.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

logger = logging.getLogger(__name__)


class GuardedCallback:
    """Calls ``callback(name, doc)``; logs instead of raising (the full traceback
    once per run, then one line per further failure)."""

    def __init__(self, name: str, callback: Callable[[str, dict], Any]) -> None:
        self.name = name
        self.callback = callback
        self.failures = 0
        self._reported = False

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self._reported = False
        try:
            self.callback(name, doc)
        except Exception as exc:
            self.failures += 1
            if not self._reported:
                self._reported = True
                logger.exception("callback %r failed on a %r document; the run goes on",
                                 self.name, name)
            else:
                logger.warning("callback %r failed again (%r document): %s", self.name, name, exc)

    def __repr__(self) -> str:
        return f"<GuardedCallback {self.name!r} {self.callback!r}>"


def guarded(name: str, callback: Callable[[str, dict], Any]) -> GuardedCallback:
    """Wrap ``callback`` so that an exception is logged, never raised into the RunEngine."""
    return GuardedCallback(name, callback)
