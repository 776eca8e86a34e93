"""A load's threads share one CPU while it runs (issue 7).

Why: a load is Python work on one GIL, shared out between libca's receive
thread, ophyd's dispatcher threads, the metadata batcher and the constructor
threads, which hand the GIL to one another thousands of times a second (every
libca call releases it).  Spread over several CPUs, each hand-off wakes a
thread on another CPU, and the thread that let the GIL go often takes it back
before the woken one has run: time passes with nobody holding it.  On one CPU
a thread gives the GIL away by blocking, and the scheduler runs the waiting one
at once.  Measured against the simulated IOCs (BENCHMARKS.md): 1000 motors in
17 s instead of 27 s, the training beamline ~15 % faster.

How: every thread of the process (``/proc/self/task``, libca's own threads
included) is given the CPU the loading thread is on; at the end each thread
gets back the CPUs it had, and a thread started during the load (the batcher,
a new circuit's libca threads) the CPUs the loading thread had.  Linux only
(``os.sched_setaffinity``); elsewhere, or where only one CPU is allowed
anyway, nothing changes.  ``load: {one_cpu: false}`` in the beamline's YAML
turns it off, e.g. on a host whose CPUs are all kept busy by other work.  A
process started during the load would keep the one CPU (a load starts none).
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

_lock = threading.Lock()
_active = False


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")


def thread_ids() -> list[int]:
    """Kernel ids of every thread of this process, Python's or not."""
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return []


def cpus_of_every_thread() -> dict[int, set[int]]:
    """Kernel thread id -> the CPUs it may run on, for every thread of this process."""
    cpus = {}
    for tid in thread_ids():
        try:
            cpus[tid] = os.sched_getaffinity(tid)
        except OSError:       # the thread ended meanwhile
            pass
    return cpus


def current_cpu() -> int | None:
    """The CPU the calling thread runs on (``processor``, field 39 of its stat)."""
    try:
        with open("/proc/thread-self/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _set(tid: int, cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(tid, cpus)
    except OSError:          # the thread ended meanwhile
        pass


@contextlib.contextmanager
def on_one_cpu(enabled: bool = True) -> Iterator[int | None]:
    """Every thread of the process on one CPU inside the block (yields it, or
    ``None`` when nothing was changed); the CPUs each had are given back after."""
    global _active
    with _lock:
        own = os.sched_getaffinity(0) if enabled and supported() and not _active else set()
        pin = len(own) > 1
        _active = _active or pin
    if not pin:
        yield None
        return
    cpu = current_cpu()
    cpu = cpu if cpu in own else min(own)
    before: dict[int, set[int]] = {}
    try:
        for _ in range(2):        # a thread started while the first pass ran is caught by the second
            for tid, cpus in cpus_of_every_thread().items():
                if tid not in before:
                    before[tid] = cpus
                    _set(tid, {cpu})
        yield cpu
    finally:
        for tid in thread_ids():
            _set(tid, before.get(tid, own))
        with _lock:
            _active = False
