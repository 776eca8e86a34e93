"""EPICS's own soft IOC (``python -m epicscorelibs.ioc``) on a loopback port.

Not a simulation of ours: a real EPICS 7 IOC with base records, so the loader's
speed and metadata handling can be checked against the reference server too.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import network


def ao_database(path: str | os.PathLike, prefix: str, count: int) -> Path:
    """Write a database of ``count`` ao records with units, precision and limits."""
    lines = [
        f'record(ao, "{prefix}ao{i}") {{ field(PREC, "3") field(EGU, "mm") '
        f'field(DRVH, "100") field(DRVL, "-100") field(HOPR, "100") field(LOPR, "-100") '
        f'field(VAL, "{i}") }}'
        for i in range(count)
    ]
    lines.append(f'record(bo, "{prefix}bo") {{ field(ZNAM, "Off") field(ONAM, "On") }}')
    lines.append(f'record(mbbo, "{prefix}mbbo") {{ field(ZRST, "Low") field(ONST, "Mid") '
                 f'field(TWST, "High") field(ZRVL, "0") field(ONVL, "1") field(TWVL, "2") }}')
    return _write_atomically(Path(path), lines)


def calcout_database(path: str | os.PathLike, prefix: str, count: int) -> Path:
    """Write a database of ``count`` calcout records ``{prefix}1..{prefix}count``:
    base's own record type behind apstools' ``CalcoutRecord`` (92 PVs each)."""
    lines = [
        f'record(calcout, "{prefix}{i}") {{ field(CALC, "A+B") field(PREC, "3") '
        f'field(EGU, "cts") field(HOPR, "10") field(LOPR, "-10") field(A, "{i}") }}'
        for i in range(1, count + 1)
    ]
    return _write_atomically(Path(path), lines)


def _write_atomically(path: Path, lines: list[str]) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


class SoftIoc:
    """A softIoc child process serving ``database`` on ``127.0.0.1:port``."""

    def __init__(self, database: str | os.PathLike, port: int):
        self.database = Path(database)
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "SoftIoc":
        env = dict(os.environ)
        env.update(network.server_environment(self.port))
        env.update(network.client_environment(network.address_list([self.port])))
        # the interactive shell of epicscorelibs.ioc exits when stdin closes: keep a pipe open
        self.process = subprocess.Popen(
            [sys.executable, "-m", "epicscorelibs.ioc", "-d", str(self.database)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not network.port_answers(self.port, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"softIoc did not serve on port {self.port} within {timeout} s")
            time.sleep(0.05)  # polling a TCP port that has no readiness message
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process and self.process.stdin:
            self.process.stdin.close()

    def __enter__(self) -> "SoftIoc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
