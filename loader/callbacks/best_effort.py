"""Bluesky's BestEffortCallback: live table, peak statistics, and live plots
when there is a display to show them on (none under the Agg backend or without
``$DISPLAY``)."""
from __future__ import annotations

import os
import sys
from typing import Any


def has_display() -> bool:
    """True when matplotlib could open a window."""
    import matplotlib
    backend = matplotlib.get_backend().lower()
    if backend in ("agg", "pdf", "ps", "svg", "cairo", "template") or "inline" in backend:
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def best_effort(beamline, table: bool = True, plots: bool | None = None,
                baseline: bool = False, heading: bool = True, **options: Any):
    """Entry point ``loader.callbacks: best_effort``."""
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
