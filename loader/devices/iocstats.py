"""IOC statistics whose derived values never block ophyd's monitor thread."""
from __future__ import annotations

from typing import Any, Callable

from apstools.synApps import IocStatsDevice
from ophyd import Signal


class IocStats(IocStatsDevice):
    """apstools' ``IocStatsDevice``, with its derived values computed from the
    values the monitors bring, never read back.

    Why: apstools keeps ``memory_used_percentage``, ``application_directory`` and
    ``startup_script`` up to date from callbacks on ``MEM_USED``, ``APP_DIR1/2`` and
    ``ST_SCRIPT1/2`` that read their siblings with ``get()``, on ophyd's one monitor
    thread, which delivers every update of the session.  Unmonitored, each read was
    a blocking Channel Access get there: two every second (MEM_USED refreshes at
    1 Hz), fourteen during a load, up to a timeout each while the IOC was slow or
    going away.  Monitored, a sibling whose first update had not come yet was still
    read over Channel Access (seen for ``APP_DIR2`` and ``MEM_MAX`` in a load).
    Here each part's value is kept from its own updates, and the derived value is
    computed once every part has one.
    """

    def __init__(self, *args, **kwargs):
        # past apstools' __init__, which only subscribes the reading callbacks replaced here
        super(IocStatsDevice, self).__init__(*args, **kwargs)
        self._derive(self.application_directory, [self._app_dir1, self._app_dir2],
                     lambda first, second: first + second)
        self._derive(self.startup_script, [self._startup_script1, self._startup_script2],
                     lambda first, second: first + second)
        self._derive(self.memory_used_percentage, [self.memory_used, self.memory_max],
                     lambda used, most: 100 * used / most if most else 0.0)

    @staticmethod
    def _derive(target: Signal, parts: list, combine: Callable[..., Any]) -> None:
        """Keep ``target`` at ``combine(*parts)`` from the parts' own updates."""
        latest: dict[str, Any] = {}

        def update(value, obj, **kwargs):
            latest[obj.name] = value
            if len(latest) == len(parts):
                target.put(combine(*(latest[part.name] for part in parts)))

        for part in parts:
            part.subscribe(update)
