"""loader/one_cpu.py: inside the block every thread of the process shares one CPU;
after it each thread has its own CPUs back, and a thread started inside gets the
CPUs the process had (a session must not be left on one CPU after a load).
Real threads and the kernel's own affinity calls."""
from __future__ import annotations

import os
import threading

import pytest

from loader.one_cpu import cpus_of_every_thread, on_one_cpu, supported

# (test_loader's load test skips on the same condition)
needs_two_cpus = pytest.mark.skipif(
    not supported() or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least two CPUs to move threads between")
pytestmark = needs_two_cpus


class ParkedThread:
    """A thread that waits until stopped, with its kernel id."""

    def __init__(self) -> None:
        self.started, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.started.wait(5)

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        self.started.set()
        self.stop.wait(30)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(5)


def test_inside_every_thread_shares_one_cpu_and_each_gets_its_own_back_after():
    own = os.sched_getaffinity(0)
    older = ParkedThread()                       # started before, on CPUs of its own
    os.sched_setaffinity(older.tid, {max(own)})
    newer = None
    try:
        with on_one_cpu() as cpu:
            assert cpu in own
            newer = ParkedThread()               # started inside: inherits the one CPU
            inside = cpus_of_every_thread()
            assert inside[threading.get_native_id()] == {cpu}
            assert inside[older.tid] == {cpu} and inside[newer.tid] == {cpu}
            assert all(cpus == {cpu} for cpus in inside.values())
        after = cpus_of_every_thread()
        assert after[threading.get_native_id()] == own
        assert after[older.tid] == {max(own)}    # what it had, not the process's
        assert after[newer.tid] == own           # what a thread started here would have had
    finally:
        older.end()
        if newer is not None:
            newer.end()


def test_turned_off_or_already_inside_changes_nothing():
    own = os.sched_getaffinity(0)
    before = cpus_of_every_thread()
    with on_one_cpu(enabled=False) as cpu:
        assert cpu is None
        assert cpus_of_every_thread() == before
    with on_one_cpu() as cpu:
        with on_one_cpu() as inner:
            assert inner is None
        assert os.sched_getaffinity(0) == {cpu}  # the inner block did not give the CPUs back early
    assert os.sched_getaffinity(0) == own
