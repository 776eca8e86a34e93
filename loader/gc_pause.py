"""Keep Python's cyclic garbage collector out of the way of a beamline load.

A load creates ~400,000 objects (signals, PVs, callbacks, their dicts) and no
garbage cycles; each allocation burst still sets off collections that walk the
whole, growing heap.  Profiles of a cold start put ~10 % of CPU in
``gc_collect_main``.  So during a load the collector is off, and at its end the
objects it made are frozen (``gc.freeze()``): they live as long as the session,
and a full collection, which would otherwise walk all of them (~0.25 s, first
right after the load and then again and again during scans), now skips them.
Reference counting still frees whatever is dropped.

Frozen objects are never collected, and ophyd devices hold reference cycles,
so what a session drops must be unfrozen to be freed: a reload that removed
devices, and a new ``load_beamline`` in a process that loaded before (a notebook
cell run twice drops the previous beamline), unfreeze and collect once (~0.25 s).
Before that, ophyd's callback threads are made to let go of their last callback
(:func:`release_callback_threads`): a dropped device still held then would be
frozen again with the survivors, and freed only by the next reload.
"""
from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections import defaultdict
from typing import Iterator

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextlib.contextmanager
def gc_paused(freeze: bool = True, collect_first: bool = False) -> Iterator[None]:
    """The collector off inside the block; at the end of the outermost block what
    exists is frozen (``freeze``) and the collector is back on if it was on.
    ``collect_first``: objects frozen by an earlier load are unfrozen and collected
    before the block (whatever was dropped since is freed)."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            if collect_first and gc.get_freeze_count():
                collect_dropped()
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if freeze:
                    gc.freeze()
                if _was_enabled:
                    gc.enable()


def collect_dropped() -> int:
    """Unfreeze and collect (for objects dropped since the last freeze); returns
    what the collector found unreachable.  Callers freeze again afterwards."""
    release_callback_threads()
    gc.unfreeze()
    return gc.collect()


def release_callback_threads(timeout: float = 1.0) -> None:
    """Run an empty callback on each of ophyd's dispatcher threads.

    Why: such a thread keeps the callback it ran last (a bound method of a
    signal, hence its whole device) until its next one arrives, which on a quiet
    thread (metadata, utility) may be never.  Threads that share a queue (the
    utility pool) each take one: the callbacks wait for each other.  Bounded:
    a thread busy for longer than ``timeout`` is not waited for.
    """
    from ophyd import _pyepics_shim as shim
    dispatcher = shim.get_dispatcher()
    if dispatcher is None:
        return
    by_queue: dict[int, list] = defaultdict(list)
    for thread in dispatcher.threads.values():
        if thread is not None and thread.is_alive():
            by_queue[id(thread.queue)].append(thread)
    ran: list[threading.Event] = []
    for threads in by_queue.values():
        barrier = threading.Barrier(len(threads), timeout=timeout)
        for _ in threads:
            event = threading.Event()

            def empty(barrier=barrier, event=event) -> None:
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass
                event.set()

            threads[0].queue.put((empty, (), {}))
            ran.append(event)
    deadline = time.monotonic() + timeout
    for event in ran:
        event.wait(max(0.0, deadline - time.monotonic()))
