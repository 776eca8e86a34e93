"""The simulated IOCs cancel subscriptions and clear channels by PV.

``iocs/server.py`` narrows caproto's ``_cull_subscriptions`` to the PV a cancel
or clear names (caproto scans every subscription of the circuit each time, which
made a client's exit with 20,000 channels take ~30 s).  These tests check that
what a client sees is unchanged: the cancelled subscription stops, every other
one on the same PV, on the same channel and on other PVs goes on.
"""
from __future__ import annotations

import time

from epics import ca

from ca_helpers import wait_for


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
