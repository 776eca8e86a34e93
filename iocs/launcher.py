"""Start and stop simulated IOCs as child processes, with bounded waits.

Used by ``beamline sim``, ``beamline demo``, the tests and the benchmarks.  A
child prints ``READY ...`` once it serves (see :mod:`iocs.server`); we wait for
that line, never for a fixed sleep.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from . import DEFAULT_PREFIXES, network
from .repeater import ensure_repeater


class IocStartError(RuntimeError):
    """The IOC process exited or did not report ready within its time limit."""


@dataclass
class IocProcess:
    """One simulated IOC (``kind`` is ``gp`` or ``ad``) in its own process."""

    kind: str
    port: int
    prefix: str | None = None
    addr_list: str | None = None          # what the IOC's own CA client may reach
    data_dir: str | os.PathLike | None = None
    extra_args: Sequence[str] = ()
    log_path: str | os.PathLike | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    ready_line: str = ""

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "iocs", self.kind, "--port", str(self.port)]
        cmd += ["--prefix", self.prefix or DEFAULT_PREFIXES[self.kind]]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 30.0) -> "IocProcess":
        """Start the process and wait (at most ``timeout`` s) until it serves."""
        ensure_repeater()
        env = dict(os.environ)
        env.update(network.client_environment(
            self.addr_list or network.address_list([self.port])))
        env["PYTHONUNBUFFERED"] = "1"
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=stderr, env=env,
            cwd=str(Path(__file__).resolve().parent.parent), start_new_session=True)
        self.ready_line = self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.process.stdout, selectors.EVENT_READ)
        buffer = b""
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith("READY"):
                        return line
                    if line.startswith("FAILED"):
                        self.stop()
                        raise IocStartError(line)
        finally:
            sel.close()
        code = self.process.poll()
        self.stop()
        raise IocStartError(
            f"IOC {self.kind!r} on port {self.port} did not report ready within {timeout:.0f} s"
            + (f" (exit code {code})" if code is not None else "")
            + (f"; output: {buffer.decode(errors='replace')[-500:]}" if buffer else ""))

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate (then kill, if it does not exit within ``timeout``)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        finally:
            if proc.stdout:
                proc.stdout.close()

    def kill(self) -> None:
        """Kill at once, as a crashing IOC would go away."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)

    def freeze(self) -> None:
        """Suspend the process (SIGSTOP): its connections stay open and it answers
        nothing, as a hung IOC.  :meth:`thaw` resumes it."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def _signal_group(self, signum: int) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "IocProcess":
        return self.start() if not self.running else self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_iocs(ports: dict[str, int], data_dir: str | os.PathLike | None = None,
               timeout: float = 30.0, log_dir: str | os.PathLike | None = None,
               extra_args: dict[str, Sequence[str]] | None = None) -> list[IocProcess]:
    """Start the IOCs named in ``ports`` (``{"gp": 5064, "ad": 5066}``), each
    able to reach all the others over CA.  On failure, what started is stopped."""
    addr = network.address_list(ports.values())
    started: list[IocProcess] = []
    try:
        for kind, port in ports.items():
            ioc = IocProcess(kind, port, addr_list=addr,
                             data_dir=data_dir if kind == "ad" else None,
                             extra_args=(extra_args or {}).get(kind, ()),
                             log_path=(Path(log_dir) / f"ioc-{kind}.log") if log_dir else None)
            started.append(ioc.start(timeout))
    except Exception:
        for ioc in started:
            ioc.stop()
        raise
    return started


def serve_foreground(ports: dict[str, int], data_dir: str | os.PathLike | None = None,
                     motors: int = 16) -> int:
    """Start the IOCs, print how to reach them, and keep them until Ctrl-C or SIGTERM
    (either stops every child, so nothing is left running)."""
    iocs = start_iocs(ports, data_dir=data_dir, extra_args={"gp": ["--motors", str(motors)]})

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        for ioc in iocs:
            print(ioc.ready_line, flush=True)
        print("export EPICS_CA_AUTO_ADDR_LIST=NO "
              f"EPICS_CA_ADDR_LIST='{network.address_list(ports.values())}'", flush=True)
        print("Ctrl-C stops them.", flush=True)
        for ioc in iocs:
            ioc.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for ioc in iocs:
            ioc.stop()
    return 0
