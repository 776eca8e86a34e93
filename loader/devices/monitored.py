"""Components redeclared auto-monitored, for callbacks that read them.

Why: ophyd and apstools callbacks ``get()`` sibling signals while ophyd's single
monitor thread runs them.  A signal that is not auto-monitored answers ``get()``
with a blocking Channel Access read there, which holds up every monitor update of
the session for a round trip, or a whole timeout while its IOC is slow or gone.
"""
from __future__ import annotations

from ophyd import Component


def monitored(component: Component) -> Component:
    """The same component (class, suffix, kind, options) with ``auto_monitor=True``."""
    return Component(component.cls, component.suffix, lazy=component.lazy,
                     trigger_value=component.trigger_value, add_prefix=component.add_prefix,
                     doc=component.doc, kind=component.kind,
                     **{**component.kwargs, "auto_monitor": True})
