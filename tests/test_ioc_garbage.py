"""A simulated IOC runs no full garbage collection while its clients are busy
(``iocs/garbage.py``): one waits for a quiet moment, or a bounded time, and what
survives is frozen; once in a while after a client leaves, cycles among the frozen
objects are freed too.
The policy is tested in a fresh interpreter (it sets process-wide ``gc`` state), and
its wiring in a real ``gp`` IOC that a raw Channel Access client visits and leaves."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import caproto as ca

from iocs import network
from iocs.garbage import NO_AUTOMATIC_FULL
from test_deferred_imports import run_fresh
from test_ioc_bursts import RawClient

POLICY = """
import gc, json, time, weakref
from iocs.garbage import QuietCollector

full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
collector = QuietCollector(quiet=0.3, max_defer=2.0, sweep_every=1.0)
collector.install()
out = {"frozen_at_install": gc.get_freeze_count() > 0}
full.clear()        # install's own collection

# a burst: requests keep coming while long-lived objects pile up, as channels do
# (Python's own trigger would run full collections here)
kept = []
start = time.monotonic()
while time.monotonic() - start < 1.0:
    collector.busy()
    kept.append([[] for _ in range(200)])
    collector.poll()
    time.sleep(0.001)
out["full_in_burst"] = len(full)
out["due_after_burst"] = collector.due()
time.sleep(0.4)
out["collected_when_quiet"] = collector.poll()
out["full_when_quiet"] = len(full)
out["survivors_frozen"] = gc.get_freeze_count() > 200 * len(kept)

# busy without a pause: the collection waits max_defer at most
full.clear()
start = time.monotonic()
while not full and time.monotonic() - start < 10:
    collector.busy()
    kept.append([[] for _ in range(200)])
    collector.poll()
    time.sleep(0.001)
out["deferred_for"] = time.monotonic() - start

kept.clear()
# cycles frozen with the survivors, dropped later, as a departed client's channels
class Node:
    pass

def frozen_cycle():
    node = Node()
    node.me = node
    collector.collect()         # frozen with the survivors
    return weakref.ref(node)

def client_leaves():
    collector.client_left()
    time.sleep(0.4)
    collector.poll()

first = frozen_cycle()
gc.collect()
out["frozen_cycle_kept_by_plain_collect"] = first() is not None
client_leaves()                 # more than sweep_every since the start: a thorough sweep
out["swept_after_client_left"] = first() is None
second = frozen_cycle()
client_leaves()                 # within sweep_every of that sweep: the frozen are not looked at
out["kept_by_the_next_departure"] = second() is not None
time.sleep(1.0)
client_leaves()
out["swept_by_a_later_departure"] = second() is None
print(json.dumps(out))
"""


def test_no_full_collection_in_a_burst_one_when_quiet_and_frozen_cycles_freed_in_time():
    out = run_fresh(POLICY)
    assert out["frozen_at_install"]
    assert out["full_in_burst"] == 0, "a full collection ran while requests kept coming"
    assert out["due_after_burst"]
    assert out["collected_when_quiet"] and out["full_when_quiet"] == 1
    assert out["survivors_frozen"]
    assert 1.5 < out["deferred_for"] < 8.0, out["deferred_for"]     # max_defer = 2 s
    assert out["frozen_cycle_kept_by_plain_collect"]
    assert out["swept_after_client_left"]
    assert out["kept_by_the_next_departure"]        # sweep_every = 1 s
    assert out["swept_by_a_later_departure"]


YOUNG = """
import gc, json, time
from iocs.garbage import QuietCollector

young = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] < 2
                    and young.append(info["generation"]))
collector = QuietCollector(quiet=0.3, max_defer=2.0, young_bound=50_000, burst_objects=10**6)
collector.install()
young.clear()
kept = []
for _ in range(100):        # 10,000 new objects while requests keep coming
    collector.busy()
    kept.append([[] for _ in range(100)])
    collector.poll()
out = {"young_in_burst": len(young), "pending": gc.get_count()[0]}
time.sleep(0.4)
out["collected_when_quiet"] = collector.poll()
out["young_when_quiet"] = len(young)
out["pending_after"] = gc.get_count()[0]
young.clear()
for _ in range(700):        # 70,000 without a pause: Python's own young pass at 50,000
    collector.busy()
    kept.append([[] for _ in range(100)])
out["young_past_the_bound"] = len(young)
print(json.dumps(out))
"""


def test_young_collections_wait_for_a_quiet_moment_or_a_bound_on_new_objects():
    """Python's young passes (every 700 new objects) found nothing to free in a
    burst of requests and cost the IOC ~5 % of a load; they wait for a quiet
    moment now, or for ``young_bound`` new objects."""
    out = run_fresh(YOUNG)
    assert out["young_in_burst"] == 0, "a young collection ran while requests kept coming"
    assert out["pending"] >= 10_000
    assert out["collected_when_quiet"] and out["young_when_quiet"] == 1
    assert out["pending_after"] < 700
    assert out["young_past_the_bound"] >= 1, "no young collection past young_bound new objects"


IOC = """
import gc, sys
from iocs import garbage
collect = garbage.QuietCollector.collect

def reporting_collect(self):
    client_left = self._client_left
    collect(self)
    gc.unfreeze()       # count the frozen too
    channels = sum(type(o).__name__ == "ServerChannel" for o in gc.get_objects())
    gc.freeze()
    print("COLLECTED client_left=%s threshold=%d channels=%d"
          % (client_left, gc.get_threshold()[2], channels), flush=True)

garbage.QuietCollector.collect = reporting_collect
from iocs.__main__ import main
main(["gp", "--port", sys.argv[1], "--motors", "2"])
"""


def test_an_ioc_collects_once_a_client_has_left_and_frees_its_channels():
    """The client monitors a motor and leaves; nothing else changes in the IOC
    (caproto's subscription loop kept the last update's Subscription, and with it
    the departed circuit and its channels, until another monitored PV changed)."""
    port = network.free_port()
    env = dict(os.environ)
    network.apply(network.server_environment(port), env)
    proc = subprocess.Popen([sys.executable, "-c", IOC, str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def next_line(until: float) -> str | None:
        try:
            return lines.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return None

    try:
        deadline = time.monotonic() + 60
        while not (line := next_line(deadline) or "").startswith("READY"):
            assert line or time.monotonic() < deadline, "the IOC did not start"
        client = RawClient(port, "gp:m1")
        client.send(client.channel.subscribe(data_type=ca.ChannelType.TIME_DOUBLE, subscriptionid=1))
        while not isinstance(client.next_command(), ca.EventAddResponse):
            pass
        client.close()                  # the client leaves
        deadline = time.monotonic() + 20
        collections = []
        while not any("client_left=True" in c for c in collections):
            line = next_line(deadline)
            assert line is not None, f"no collection after the client left: {collections}"
            collections.append(line)
        assert f"threshold={NO_AUTOMATIC_FULL}" in collections[-1]
        assert "channels=0" in collections[-1], collections[-1]
    finally:
        proc.terminate()
        proc.wait(10)
