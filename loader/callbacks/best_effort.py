"""Bluesky's BestEffortCallback: live table, peak statistics, and live plots
when there is a display to show them on (none under the Agg backend or without
``$DISPLAY``).

It is made when the first document reaches it, or when it is first asked for
anything (``bec.peaks``, ``bec.disable_plots()``): making it imports
``matplotlib.pyplot`` (~0.4 s), which a session needs only once it runs a scan.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from ..first_use import MadeAtFirstUse


def has_display() -> bool:
    """True when matplotlib could open a window."""
    import matplotlib
    backend = matplotlib.get_backend().lower()
    if backend in ("agg", "pdf", "ps", "svg", "cairo", "template") or "inline" in backend:
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def make_best_effort(table: bool = True, plots: bool | None = None, baseline: bool = False,
                     heading: bool = True, **options: Any):
    """A BestEffortCallback configured as the YAML asks (``plots=None``: if there is a display)."""
    from bluesky.callbacks.best_effort import BestEffortCallback

    bec = BestEffortCallback(**options)
    if plots is None:
        plots = has_display()
    if not plots:
        bec.disable_plots()
    if not table:
        bec.disable_table()
    if not baseline:
        bec.disable_baseline()
    if not heading:
        bec.disable_heading()
    return bec


class BestEffortAtFirstUse(MadeAtFirstUse):
    """The session's BestEffortCallback, made at its first document or attribute."""

    # asked by the session of every callback it subscribes (an apstools writer's
    # ``.receiver``): answered by this object, which is the callback itself
    _not_forwarded = frozenset({"receiver"})

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self._options = options

    def _make(self) -> Any:
        return make_best_effort(**self._options)

    def _not_made_repr(self) -> str:
        return "<BestEffortCallback, made at first use>"

    def __call__(self, name: str, doc: dict) -> Any:
        return self.made()(name, doc)


def best_effort(beamline, table: bool = True, plots: bool | None = None,
                baseline: bool = False, heading: bool = True, **options: Any):
    """Entry point ``loader.callbacks: best_effort``.  Options other than these four
    go to bluesky's class, which is then made at once: a wrong one is reported when
    the session starts, not at the first scan."""
    if options:
        return make_best_effort(table=table, plots=plots, baseline=baseline, heading=heading, **options)
    return BestEffortAtFirstUse(table=table, plots=plots, baseline=baseline, heading=heading)
