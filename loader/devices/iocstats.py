"""IOC statistics whose derived values never block ophyd's monitor thread."""
from __future__ import annotations

from apstools.synApps import IocStatsDevice
from ophyd import Component


def _monitored(component: Component) -> Component:
    """The same component (class, suffix, kind, options) with ``auto_monitor=True``."""
    return Component(component.cls, component.suffix, lazy=component.lazy,
                     trigger_value=component.trigger_value, add_prefix=component.add_prefix,
                     doc=component.doc, kind=component.kind,
                     **{**component.kwargs, "auto_monitor": True})


class IocStats(IocStatsDevice):
    """apstools' ``IocStatsDevice``, with the signals its callbacks read monitored.

    Why: apstools keeps ``memory_used_percentage``, ``application_directory`` and
    ``startup_script`` up to date from callbacks on ``MEM_USED``, ``APP_DIR1/2`` and
    ``ST_SCRIPT1/2`` that read their siblings with ``get()``.  Those signals are not
    auto-monitored, so each read was a blocking Channel Access get on ophyd's one
    monitor thread, which delivers every update of the session: two gets every
    second (MEM_USED refreshes at 1 Hz) for as long as the session ran, fourteen
    during a load, and up to a timeout each while the IOC was slow or going away.
    Monitored, ``get()`` returns the value the monitor brought.
    """

    # what apstools' callbacks read when a sibling updates
    memory_used = _monitored(IocStatsDevice.memory_used)
    memory_max = _monitored(IocStatsDevice.memory_max)
    _app_dir1 = _monitored(IocStatsDevice._app_dir1)
    _app_dir2 = _monitored(IocStatsDevice._app_dir2)
    _startup_script1 = _monitored(IocStatsDevice._startup_script1)
    _startup_script2 = _monitored(IocStatsDevice._startup_script2)
