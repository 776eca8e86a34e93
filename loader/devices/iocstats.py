"""IOC statistics whose derived values never block ophyd's monitor thread."""
from __future__ import annotations

from apstools.synApps import IocStatsDevice

from .monitored import monitored


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
    memory_used = monitored(IocStatsDevice.memory_used)
    memory_max = monitored(IocStatsDevice.memory_max)
    _app_dir1 = monitored(IocStatsDevice._app_dir1)
    _app_dir2 = monitored(IocStatsDevice._app_dir2)
    _startup_script1 = monitored(IocStatsDevice._startup_script1)
    _startup_script2 = monitored(IocStatsDevice._startup_script2)
