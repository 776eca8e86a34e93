"""IOC statistics PVs (devIocStats' ``iocAdminSoft.db``) of the simulated ``gp:`` IOC.

Values are live (uptime, time of day, CPU load and memory of this process and
host, file descriptors, CA connections), refreshed once a second like the
real records' SCAN.  As on the APS training IOC, where the database is
loaded with ``IOC=gp:`` and aliased, every statistic is served both as
``{prefix}NAME`` and ``{prefix}:NAME``; ``apstools.synApps.IocStatsDevice``
uses both forms (``gp:HOSTNAME`` but ``gp::UPTIME``).
"""
from __future__ import annotations

import datetime
import os
import platform
import socket
import time

import psutil
from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from ..server import ca_clients

UPDATE_PERIOD = 1.0
ACCESS_MODES = ("Running", "Maintenance", "Test", "OFFLINE")


def _ro_float(doc: str, units: str = "", precision: int = 0) -> pvproperty:
    return pvproperty(value=0.0, read_only=True, doc=doc, units=units, precision=precision)


def _ro_text(doc: str, value: str = "") -> pvproperty:
    return pvproperty(value=value, dtype=ChannelType.STRING, read_only=True, doc=doc)


def _uptime(seconds: float) -> str:
    """devIocStats' format: ``D days, HH:MM:SS``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days} days, {hours:02d}:{minutes:02d}:{secs:02d}"


def _todstamp(when: datetime.datetime) -> str:
    return when.strftime("%m/%d/%Y %H:%M:%S")


class IocStats(PVGroup):
    """The statistics records of one IOC (``ai``/``stringin``/``mbbo`` as in iocAdminSoft.db)."""

    # ai records
    SYS_CPU_LOAD = _ro_float("System CPU load", "%", 1)
    IOC_CPU_LOAD = _ro_float("IOC CPU load", "%", 1)
    CPU_CNT = _ro_float("Number of CPUs")
    SUSP_TASK_CNT = _ro_float("Number suspended tasks")
    MEM_USED = _ro_float("Allocated memory", "byte")
    MEM_FREE = _ro_float("Free memory", "byte")
    MEM_MAX = _ro_float("Maximum memory", "byte")
    FD_MAX = _ro_float("Max file descriptors")
    FD_CNT = _ro_float("Allocated file descriptors")
    FD_FREE = _ro_float("Available file descriptors")
    CA_CLNT_CNT = _ro_float("Number of CA clients")
    CA_CONN_CNT = _ro_float("Number of CA connections")
    RECORD_CNT = _ro_float("Number of records")
    PROCESS_ID = _ro_float("Process ID")
    PARENT_ID = _ro_float("Parent process ID")
    HEARTBEAT = _ro_float("1 Hz counter since startup")
    START_CNT = _ro_float("Times IOC started")
    # stringin records
    UPTIME = _ro_text("Elapsed time since start")
    STARTTOD = _ro_text("Time and date of startup")
    TOD = _ro_text("Current time and date")
    HOSTNAME = _ro_text("Host name", socket.gethostname()[:39])
    KERNEL_VERS = _ro_text("OS version", f"{platform.system()} {platform.release()}"[:39])
    EPICS_VERS = _ro_text("EPICS version", "caproto simulated IOC")
    ENGINEER = _ro_text("Engineer", os.environ.get("ENGINEER", "simulated")[:39])
    LOCATION = _ro_text("Location", os.environ.get("LOCATION", "loopback")[:39])
    TIMEZONE = _ro_text("Timezone", time.strftime("%Z"))
    CA_MAX_ARRAY = _ro_text("EPICS_CA_MAX_ARRAY_BYTES",
                            os.environ.get("EPICS_CA_MAX_ARRAY_BYTES", "16384"))
    CA_ADDR_LIST = _ro_text("EPICS_CA_ADDR_LIST", os.environ.get("EPICS_CA_ADDR_LIST", "")[:39])
    CA_SRVR_PORT = _ro_text("EPICS_CA_SERVER_PORT", os.environ.get("EPICS_CA_SERVER_PORT", ""))
    APP_DIR1 = _ro_text("Application directory (part 1)")
    APP_DIR2 = _ro_text("Application directory (part 2)")
    ST_SCRIPT1 = _ro_text("Startup script (part 1)")
    ST_SCRIPT2 = _ro_text("Startup script (part 2)")
    # mbbo
    ACCESS = pvproperty(value="Running", dtype=ChannelType.ENUM, enum_strings=ACCESS_MODES,
                        doc="IOC access mode")
    # not part of iocStats: the xxx IOC's ISO 8601 clock (soft timestamp stringin)
    iso8601 = _ro_text("Current time, ISO 8601")

    def __init__(self, *args, record_count: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_count = record_count or len(self.pvdb)
        self._started = time.time()
        self._process = psutil.Process()
        self._process.cpu_percent(None)      # prime the CPU counters
        psutil.cpu_percent(None)

    @iso8601.startup
    async def iso8601(self, instance, async_lib):
        """Fill the constant values, then refresh the live ones every second.

        (Hooked on ``iso8601``, the one PV without an alias, so it runs once.)
        """
        started = datetime.datetime.fromtimestamp(self._started)
        app_dir = os.getcwd()
        script = f"python -m iocs gp (pid {os.getpid()})"
        await self.STARTTOD.write(_todstamp(started))
        await self.APP_DIR1.write(app_dir[:39])
        await self.APP_DIR2.write(app_dir[39:78])
        await self.ST_SCRIPT1.write(script[:39])
        await self.ST_SCRIPT2.write(script[39:78])
        await self.CPU_CNT.write(float(psutil.cpu_count() or 1))
        await self.PROCESS_ID.write(float(os.getpid()))
        await self.PARENT_ID.write(float(os.getppid()))
        await self.START_CNT.write(1.0)
        await self.RECORD_CNT.write(float(self.record_count))
        while True:
            await self._refresh()
            await async_lib.library.sleep(UPDATE_PERIOD)

    async def _refresh(self) -> None:
        now = datetime.datetime.now()
        up = time.time() - self._started
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            fds = self._process.num_fds() if hasattr(self._process, "num_fds") else 0
            ioc_cpu = self._process.cpu_percent(None) / (psutil.cpu_count() or 1)
        try:
            import resource
            fd_max = float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        except (ImportError, ValueError):
            fd_max = 1024.0
        await self.HEARTBEAT.write(self.HEARTBEAT.value + 1)
        await self.UPTIME.write(_uptime(up))
        await self.TOD.write(_todstamp(now))
        await self.iso8601.write(now.astimezone().isoformat(timespec="seconds"))
        await self.SYS_CPU_LOAD.write(psutil.cpu_percent(None))
        await self.IOC_CPU_LOAD.write(ioc_cpu)
        await self.MEM_USED.write(float(rss))
        await self.MEM_FREE.write(float(memory.available))
        await self.MEM_MAX.write(float(memory.total))
        await self.FD_MAX.write(fd_max)
        await self.FD_CNT.write(float(fds))
        await self.FD_FREE.write(fd_max - fds)
        clients, channels = ca_clients()
        await self.CA_CLNT_CNT.write(float(clients))
        await self.CA_CONN_CNT.write(float(channels))


def build(prefix: str, record_count: int = 0, **options) -> list[PVGroup]:
    """The statistics, served as ``{prefix}NAME`` and (alias) ``{prefix}:NAME``."""
    stats = IocStats(prefix=prefix, record_count=record_count)
    for name, channel in list(stats.pvdb.items()):
        suffix = name[len(prefix):]
        if suffix != "iso8601":
            stats.pvdb[f"{prefix}:{suffix}"] = channel
    return [stats]
