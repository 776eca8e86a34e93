"""The simulated IOCs cancel subscriptions and clear channels by PV.

``iocs/server.py`` narrows caproto's ``_cull_subscriptions`` to the PV a cancel
or clear names (caproto scans every subscription of the circuit each time, which
made a client's exit with 20,000 channels take ~30 s).  These tests check that
what a client sees is unchanged: the cancelled subscription stops, every other
one on the same PV, on the same channel and on other PVs goes on.

It also sends each circuit's monitor updates as they pile up, not through
caproto's batching loop: none is lost or sent after its subscription's cancel is
answered, and a fast stream is not held back in bursts.
"""
from __future__ import annotations

import time

import caproto
from epics import ca

from ca_helpers import wait_for
from test_ioc_bursts import RawClient


def _subscribe(chid, seen: list):
    """(keep what this returns: pyepics calls through it for as long as it lives)"""
    return ca.create_subscription(chid, callback=lambda value=None, **kw: seen.append(value))


def _connect(name: str):
    chid = ca.create_channel(name, connect=True)
    assert ca.isConnected(chid), name
    return chid


def test_cancelling_one_subscription_leaves_the_others_on_the_pv(gp_ioc):
    chid = _connect("gp:gp:float5.LOPR")
    other = _connect("gp:gp:float6.LOPR")
    kept, cancelled, elsewhere = [], [], []
    keep = _subscribe(chid, kept)
    cancel = _subscribe(chid, cancelled)
    away = _subscribe(other, elsewhere)
    wait_for(lambda: kept and cancelled and elsewhere, timeout=10, message="first monitor updates")

    try:
        ca.clear_subscription(cancel[2])
        for value in (1.25, 2.5):
            ca.put(chid, value, wait=True)
            ca.put(other, value, wait=True)
        wait_for(lambda: kept[-1] == 2.5 and elsewhere[-1] == 2.5, timeout=10,
                 message="updates on the subscriptions still open")
        time.sleep(0.3)
        assert 1.25 not in cancelled and 2.5 not in cancelled
    finally:                                # a subscription must not outlive its callback
        ca.clear_subscription(keep[2])
        ca.clear_subscription(away[2])


def _unused(names: list[str]) -> str:
    """A PV no channel of this process uses yet: clearing a channel other objects hold
    (pyepics shares one per name) would leave them a dangling channel id."""
    in_use = ca._cache.get(ca.current_context(), {}) if ca.current_context() else {}
    free = [name for name in names if name not in in_use]
    assert free, "every candidate PV already has a channel in this process"
    return free[0]


def test_a_cleared_channel_can_be_made_again_and_monitors_as_before(gp_ioc):
    ca.use_initial_context()
    name = _unused([f"gp:gp:float{i}.HOPR" for i in range(20, 0, -1)])
    first = _connect(name)
    neighbour = _connect("gp:gp:float8")
    before, nearby, after = [], [], []
    on_first = _subscribe(first, before)
    on_neighbour = _subscribe(neighbour, nearby)
    on_again = None
    try:
        wait_for(lambda: before and nearby, timeout=10, message="first monitor updates")
        ca.clear_channel(first)             # ends its subscription with it
        ca.flush_io()

        again = _connect(name)
        on_again = _subscribe(again, after)
        ca.put(again, 7.5, wait=True)
        ca.put(neighbour, 8.5, wait=True)
        wait_for(lambda: after and after[-1] == 7.5 and nearby[-1] == 8.5, timeout=10,
                 message="monitors after the channel was cleared and made again")
    finally:                                # a subscription must not outlive its callback
        for subscription in (on_neighbour, on_again):
            if subscription is not None:
                ca.clear_subscription(subscription[2])
    del on_first


def test_a_burst_of_subscriptions_each_gets_its_updates_and_none_after_its_cancel(gp_ioc):
    """2,000 subscriptions on one channel in one write, every other one cancelled
    right after it is made, then a write to the PV: each subscription left open gets its
    first update and the new value; a cancelled one gets nothing after its cancel
    is answered (``iocs/server.py`` sends a circuit's monitor updates in batches of
    what has piled up, and drops those of subscriptions cancelled meanwhile).
    Spoken over raw TCP with caproto's client-side state machine, which also rejects
    an update for a subscription whose cancel it has seen answered."""
    client = RawClient(gp_ioc.port, "gp:gp:float19")
    client.sock.settimeout(10)      # a lost update: fail in seconds, not after RawClient's minute
    count = 2000
    channel = client.channel
    try:
        burst = []
        for i in range(count):      # every other one cancelled right after it is made: the
            burst.append(client.encode(         # cancel races the subscription's first update
                channel.subscribe(data_type=caproto.ChannelType.TIME_DOUBLE, subscriptionid=i)))
            if i % 2 == 0:
                burst.append(client.encode(channel.unsubscribe(i)))
        client.sock.sendall(b"".join(burst))
        values: dict[int, list] = {i: [] for i in range(1, count, 2)}    # the ones left open
        cancelled: set[int] = set()
        late: list[int] = []
        read_back: list = []

        def take(until) -> None:
            deadline = time.monotonic() + 30
            while not until():
                assert time.monotonic() < deadline, (
                    f"{sum(map(bool, values.values()))} of {len(values)} subscriptions updated, "
                    f"{len(cancelled)} of {count // 2} cancels answered")
                for command in client.commands():
                    if isinstance(command, caproto.ReadNotifyResponse):
                        read_back.append(command.data[0])
                    if not isinstance(command, caproto.EventAddResponse):
                        continue
                    subscription = command.subscriptionid
                    if subscription in values:
                        values[subscription].append(command.data[0])
                    elif not command.payload_size:
                        cancelled.add(subscription)     # a cancel is answered with no payload
                    elif subscription in cancelled:
                        late.append(subscription)
                    # (an update of a cancelled one before its cancel is answered is allowed)

        take(lambda: len(cancelled) == count // 2 and all(values.values()))
        client.send(channel.write([4.25], data_type=caproto.ChannelType.DOUBLE, ioid=1))
        take(lambda: all(updates[-1] == 4.25 for updates in values.values()))
        time.sleep(0.3)
        client.send(channel.read(data_type=caproto.ChannelType.DOUBLE, ioid=2))
        take(lambda: read_back)                 # and with it whatever the IOC sent before it
        assert read_back == [4.25]
        assert not late, f"updates after the cancel was answered: {late[:10]}"
    finally:
        client.close()


def test_a_fast_stream_of_updates_arrives_as_it_comes_not_in_held_back_bursts(gp_ioc):
    """A PV written ~200 times a second for 2 s: its monitor updates arrive as they
    come, each value in turn.  caproto's own loop batches updates that follow each
    other within 10 ms and doubles the time it holds a batch after every send, up
    to a second: such a stream reached the client in bursts up to ~0.7 s apart (a
    live plot that freezes), and a motor's DMOV 1 right after its 0 came ~11 ms late."""
    chid = _connect("gp:gp:float12")
    arrivals: list[tuple[float, float]] = []
    subscription = ca.create_subscription(
        chid, callback=lambda value=None, **kw: arrivals.append((time.monotonic(), value)))
    try:
        wait_for(lambda: arrivals, timeout=10, message="the first monitor update")
        arrivals.clear()
        written = 0
        start = time.monotonic()
        while time.monotonic() - start < 2.0:
            written += 1
            ca.put(chid, float(written))
            ca.flush_io()
            time.sleep(0.005)
        wait_for(lambda: arrivals and arrivals[-1][1] == written, timeout=10,
                 message=f"the last of {written} values")
        values = [value for _, value in arrivals]
        assert values == sorted(values), "updates out of order"
        gaps = [later - earlier for (earlier, _), (later, _) in zip(arrivals, arrivals[1:])]
        assert max(gaps) < 0.25, f"updates held back: {max(gaps) * 1000:.0f} ms between two"
    finally:                                # a subscription must not outlive its callback
        ca.clear_subscription(subscription[2])
