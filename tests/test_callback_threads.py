"""libca's callback threads keep one Python thread state (issue 7, ``loader/callback_threads.py``).

Run against EPICS's own softIoc.  A ``threading.local`` lives in the thread
state, so it shows whether a thread's later callbacks run in the state of its
first one or in a new one each.
"""
import os
import threading

import ophyd  # noqa: F401  (first: ophyd points pyepics at epicscorelibs' libca)

import epics
from loader.callback_threads import keep_thread_state

from ca_helpers import wait_for
from test_deferred_imports import run_fresh


def _monitor_counts(pv: epics.PV, values, before=None) -> list[tuple[int, int]]:
    """(native thread id, callbacks that thread ran before in the same state) for
    each monitor callback while ``values`` are put."""
    local = threading.local()
    seen: list[tuple[int, int]] = []

    def on_change(**kwargs):
        if before is not None:
            before()
        seen.append((threading.get_native_id(), getattr(local, "count", 0)))
        local.count = getattr(local, "count", 0) + 1

    pv.add_callback(on_change)
    for value in values:
        pv.put(value, wait=True)
    assert wait_for(lambda: len(seen) >= len(values), 10), seen
    return seen


def _ran_in_one_state(seen: list[tuple[int, int]]) -> bool:
    """Each thread's n-th callback saw the n-1 before it."""
    per_thread: dict[int, int] = {}
    for thread, count in seen:
        if count != per_thread.get(thread, 0):
            return False
        per_thread[thread] = count + 1
    return True


def test_callbacks_after_the_first_reuse_the_threads_state(softioc):
    pv = epics.PV("sx:ao41")
    assert pv.wait_for_connection(10)
    seen = _monitor_counts(pv, [1.0, 2.0, 3.0, 4.0], before=keep_thread_state)
    assert threading.get_native_id() not in {thread for thread, _ in seen}, "callbacks ran in the test's thread"
    assert _ran_in_one_state(seen), seen
    assert max(count for _, count in seen) >= 3


LOADERS_PV = """
import json, sys
sys.path[:0] = sys.argv[3:]
from ophyd import EpicsSignal
import epics
from loader import bulk_metadata
from test_callback_threads import _monitor_counts, _ran_in_one_state
bulk_metadata.install()
signal = EpicsSignal(sys.argv[1], name="signal")
signal.wait_for_connection(timeout=10)
# a plain pyepics PV on the same IOC: its monitor runs on libca's receive thread
# itself (the loader's PVs hand theirs to ophyd's dispatcher thread)
plain = epics.PV(sys.argv[2])
assert plain.wait_for_connection(10)
seen = _monitor_counts(plain, [5.0, 6.0, 7.0])
print(json.dumps({"class": type(signal._read_pv).__name__, "seen": seen, "one_state": _ran_in_one_state(seen)}))
import os; os._exit(0)
"""


def test_a_loaders_pv_keeps_the_state_of_libcas_thread_from_its_connection_on(softioc):
    """The loader's PV class keeps the state of the thread that connects it, so
    callbacks that do not ask for it reuse it too.  In a fresh interpreter: in this
    one, earlier tests' callbacks have kept it already."""
    tests = os.path.dirname(__file__)
    out = run_fresh(LOADERS_PV, "sx:ao42", "sx:ao43", tests)
    assert out["class"] == "BulkMetadataPV"
    assert len(out["seen"]) >= 3
    assert out["one_state"], out["seen"]


def test_a_python_thread_that_kept_its_state_still_ends():
    thread = threading.Thread(target=lambda: (keep_thread_state(), keep_thread_state()))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert thread not in threading.enumerate()
