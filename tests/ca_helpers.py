"""Helpers for tests against the simulated IOCs over real Channel Access."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import epics


def declared_pvs(device) -> set[str]:
    """Every PV an ophyd device (or signal) declares, computed from its class.

    Lazy signals are created without ophyd waiting for each to connect (that
    would be one wait per signal); check the set afterwards with ``unconnected``.
    """
    from ophyd import Device
    signals = [device]
    if isinstance(device, Device):
        for dev in [device] + [sub for _, sub in device.walk_subdevices(include_lazy=True)]:
            dev.lazy_wait_for_connection = False
        signals = [walk.item for walk in device.walk_signals(include_lazy=True)]
    names: set[str] = set()
    for sig in signals:
        for attr in ("pvname", "setpoint_pvname"):
            pv = getattr(sig, attr, None)
            if pv:
                names.add(pv)
    return names


def unconnected(pvnames, timeout: float = 10.0) -> list[str]:
    """The PVs among ``pvnames`` that do not connect within ``timeout`` (one bounded wait)."""
    chids = {name: epics.ca.create_channel(name, connect=False, auto_cb=False) for name in pvnames}
    deadline = time.monotonic() + timeout
    pending = set(chids)
    while pending and time.monotonic() < deadline:
        epics.ca.poll(evt=0.01)
        pending = {n for n in pending if not epics.ca.isConnected(chids[n])}
    return sorted(pending)


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it is truthy or ``timeout`` passes (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


@contextmanager
def monitor_thread_held() -> Iterator[threading.Event]:
    """Hold ophyd's one monitor-callback thread (a busy session, a loaded IOC) until
    the yielded event is set, or the block ends: every monitor update waits."""
    from ophyd import _pyepics_shim as shim
    gate = threading.Event()
    shim.get_dispatcher().threads["monitor"].queue.put((gate.wait, (30,), {}))
    try:
        yield gate
    finally:
        gate.set()


def record_blocking_gets() -> list[tuple[str, str]]:
    """``(thread name, PV name)`` of every blocking pyepics get from now on (the list
    fills as they happen), for the rest of the process (a fresh one)."""
    gets: list[tuple[str, str]] = []
    real_get = epics.ca.get_with_metadata

    def get_with_metadata(chid, *args, **kwargs):
        if kwargs.get("wait", True):
            gets.append((threading.current_thread().name, epics.ca.name(chid)))
        return real_get(chid, *args, **kwargs)

    epics.ca.get_with_metadata = get_with_metadata
    return gets


def blocking_gets_by_thread(monkeypatch) -> list[tuple[str, str]]:
    """As :func:`record_blocking_gets` until the test ends: ophyd's monitor thread
    must never be one of the threads."""
    monkeypatch.setattr(epics.ca, "get_with_metadata", epics.ca.get_with_metadata)  # undone at teardown
    return record_blocking_gets()


def ca_value(pv: str):
    """Read ``pv`` with caproto's synchronous client: independent of the loader's pyepics channels."""
    from caproto.sync.client import read
    data = read(pv, timeout=10).data
    return data[0].decode() if isinstance(data[0], bytes) else data[0]
