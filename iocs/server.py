"""Run caproto PV groups as one IOC on one loopback port.

Each IOC process prints ``READY <name> port=<port> pvs=<count>`` on stdout once
it is serving, which :mod:`iocs.launcher` waits for (a bounded wait, no sleeps).
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
import weakref
from typing import Iterable

from . import garbage, network

logger = logging.getLogger(__name__)

COALESCE_BYTES = 16384   # replies held back while a circuit has more requests queued, at most this much
YIELD_EVERY = 64         # requests of one circuit handled before the other tasks get the event loop
UPDATES_PER_SEND = 128   # monitor updates of one circuit sent in one go, at most


_serving: "weakref.WeakSet" = weakref.WeakSet()     # the server contexts of this process


def ca_clients() -> tuple[int, int]:
    """``(clients, channels)`` this process serves, counted from the server's own
    circuits (iocStats' CA_CLNT_CNT and CA_CONN_CNT).  Asking the OS instead
    (psutil's ``net_connections``) cost ~30 ms of the IOC's event loop a second."""
    circuits = [circuit for context in list(_serving) for circuit in list(context.circuits)]
    return len(circuits), sum(len(circuit.circuit.channels) for circuit in circuits)


def merge_pvdb(groups: Iterable) -> dict:
    """One pvdb from several caproto ``PVGroup`` objects; a duplicate PV is an error."""
    pvdb: dict = {}
    for group in groups:
        for name, pv in group.pvdb.items():
            if name in pvdb:
                raise ValueError(f"PV {name!r} is served twice")
            pvdb[name] = pv
    return pvdb


def _context_class():
    """caproto's asyncio server Context, made to answer as promptly as an EPICS IOC.

    * Nagle off: asyncio switches it off only for sockets whose ``proto`` is
      IPPROTO_TCP, and caproto's listening socket has proto 0: two monitor
      updates in a row (AcquireBusy 1 then 0, DMOV 0 then 1) then waited ~40 ms
      for the client's delayed ACK, which capped a triggered detector at ~20 frames/s.
    * Search replies echo the client's datagram sequence number (sent in the
      VersionRequest of each search datagram, as EPICS's rsrv does).  caproto
      answers with a fixed 1; libca then takes every reply after its first
      datagrams for a stale one, never widens its search window and sends one
      datagram (~25 names) per timer period: ~1,000 channels/s however idle the
      IOC.  Echoed, 2,000 channels connect in a few hundredths of a second.
    * Cancelling a subscription or clearing a channel looks at that PV's
      subscriptions only.  caproto tests every subscription of the circuit each
      time: a client that clears its 20,000 channels at exit (1000 motors) kept the
      IOC busy, and the client waiting, for ~30 s.
    * A burst of requests is answered in few writes, and without a trip through the
      event loop for each request.  caproto writes every reply on its own (with
      Nagle off, one TCP segment each) and waits on an already-set event through
      ``asyncio.wait_for`` before every read and subscription, which makes a task
      and a pass of the event loop per request.  A load of 1000 motors sends ~60,000
      requests, and its last seconds waited for the IOC.  Now replies are held while
      the circuit has more requests queued (up to ``COALESCE_BYTES``; a pass of the
      event loop sends them too), and every ``YIELD_EVERY`` requests the circuit
      lets the other tasks run, so other clients and monitor updates are not held
      up by one client's burst.  A lone request is answered at once, as before.
    * Monitor updates are sent as they are queued, in batches of what has piled
      up.  caproto's loop waits on the circuit's queue through ``asyncio.wait_for``
      for every update (a task and a timer each), holds a batch for up to a
      second while updates keep coming (a PV written 200 times a second reached
      its client in bursts up to 0.7 s apart, and a motor's DMOV 1 right after
      its 0 came ~11 ms late), and before each batch lists every
      subscription of the circuit to drop those cancelled meanwhile (5,100 for
      300 motors).  Here the circuit keeps the set of its live subscription ids,
      updated where subscriptions are added and removed.  With young garbage
      collections left to quiet moments (:mod:`iocs.garbage`) and caproto's
      per-request notify skipped, a 300-motor load costs the IOC ~11 % less CPU
      (1.79 -> 1.59 s, 15 of 16 interleaved pairs), and its event loop waits in
      the kernel 756 times instead of 15,389.
    """
    from collections import defaultdict, deque

    import caproto as ca
    from caproto.asyncio.server import AsyncioEvent, Context, VirtualCircuit
    from caproto.server.common import HIGH_LOAD_EVENT_TIME_THRESHOLD as EVENTS_TOGGLE_GRACE
    from caproto.server.common import DisconnectedCircuit

    class Subscriptions(deque):
        """The subscriptions of one spec, their ids kept in the circuit's live set."""

        def __init__(self, live_ids: set):
            super().__init__()
            self.live_ids = live_ids

        def append(self, sub):
            self.live_ids.add(sub.subscriptionid)
            super().append(sub)

        def remove(self, sub):
            super().remove(sub)
            self.live_ids.discard(sub.subscriptionid)

    class SubscriptionsByPV(defaultdict):
        """A circuit's ``{SubscriptionSpec: deque of Subscription}``, also indexed by
        PV, with the ids of all its subscriptions (``live_ids``)."""

        def __init__(self):
            super().__init__()
            self.specs_of = defaultdict(set)
            self.live_ids: set = set()

        def __missing__(self, spec):
            self.specs_of[spec.db_entry].add(spec)
            subs = self[spec] = Subscriptions(self.live_ids)
            return subs

        def clear(self):
            super().clear()
            self.specs_of.clear()
            self.live_ids.clear()

    class OnePV:
        """A circuit as caproto's ``_cull_subscriptions`` sees it, narrowed to the
        subscriptions of one PV (the same deques: removals are real)."""

        def __init__(self, circuit, db_entry):
            self._circuit = circuit
            subscriptions = circuit.subscriptions
            self.subscriptions = {spec: subscriptions[spec]
                                  for spec in subscriptions.specs_of.get(db_entry, ())}

        def __getattr__(self, name):
            return getattr(self._circuit, name)

    class SetEvent(AsyncioEvent):
        """caproto's event with a timeout, but waiting on it while it is set (nearly
        always: it is cleared only while a put is being handled) returns at once."""

        async def wait(self, timeout=None):
            if self.is_set():
                return True
            return await super().wait(timeout)

    class IndexedCircuit(VirtualCircuit):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.subscriptions = SubscriptionsByPV()
            self.write_event = SetEvent()
            self._outbox: list[bytes] = []
            self._outbox_bytes = 0
            self._flush_scheduled = False
            self._since_yield = 0

        async def _command_queue_iteration(self, command):
            garbage.collector.busy()
            self._since_yield += 1
            if self._since_yield >= YIELD_EVERY:
                self._since_yield = 0
                await asyncio.sleep(0)
            return await super()._command_queue_iteration(command)

        async def _send_buffers(self, *buffers):
            data = b"".join(buffers)      # copied now: a buffer may be a PV's live value
            self._outbox.append(data)
            self._outbox_bytes += len(data)
            if self._outbox_bytes < COALESCE_BYTES and not self.command_queue.empty():
                if not self._flush_scheduled:    # sent at the next pass of the event loop at the latest
                    self._flush_scheduled = True
                    asyncio.get_running_loop().call_soon(self._flush_soon)
                return
            self._write_outbox()
            await self.client.send(b"")     # caproto's send of nothing: its drain, under its lock

        def _write_outbox(self) -> None:
            """Write what the outbox holds, taken and written in one step.  Taken before
            waiting for caproto's send lock (a slow client's full buffers), replies were
            overtaken by those held back after them and flushed meanwhile."""
            if self._outbox:
                data = b"".join(self._outbox)
                self._outbox.clear()
                self._outbox_bytes = 0
                self.client.writer.write(data)

        def _flush_soon(self) -> None:
            self._flush_scheduled = False
            try:
                self._write_outbox()
            except Exception:       # the circuit is closing: its reader handles that
                pass

        async def _on_disconnect(self):
            await super()._on_disconnect()
            garbage.collector.client_left()

        async def _wake_new_command(self):
            """caproto notifies this condition after every request (a lock taken and
            given back each time); nothing in its asyncio server or ours waits on it."""
            # asyncio.Condition's own list of waiters; were it renamed, notify as caproto does
            if getattr(self.new_command_condition, "_waiters", True):
                await super()._wake_new_command()

        async def subscription_queue_loop(self):
            """Send the circuit's monitor updates: what has piled up, at most
            ``UPDATES_PER_SEND`` at a time, without those of subscriptions cancelled
            since they were queued (no update may follow the cancel's reply)."""
            self.events_on.set()
            queue = self.subscription_queue
            live = self.subscriptions.live_ids
            try:
                while True:
                    refs = [await queue.get()]
                    while len(refs) < UPDATES_PER_SEND and not queue.empty():
                        refs.append(queue.get_nowait())
                    updates = [ref() for ref in refs]
                    # a dead reference: the subscription's backlog overflowed (not
                    # updates.count(None): caproto's commands compare as bytes)
                    dropped = sum(update is None for update in updates)
                    if dropped and time.monotonic() - self.time_events_toggled > EVENTS_TOGGLE_GRACE:
                        self.log.warning("High load. Dropped %d monitor updates.", dropped)
                    updates = [update for update in updates
                               if update is not None and update.subscriptionid in live]
                    if updates:
                        await self.send(*updates)
                    if not queue.empty():
                        await asyncio.sleep(0)      # the other tasks run between batches
            except self.TaskCancelled:
                return
            except DisconnectedCircuit:
                await self._on_disconnect()
                self.circuit.disconnect()
                await self.context.circuit_disconnected(self)

        async def _cull_subscriptions(self, db_entry, func):
            # every subscription func can match is on db_entry: the command's channel
            return await VirtualCircuit._cull_subscriptions(OnePV(self, db_entry), db_entry, func)

    class SequenceEchoingBroadcaster(ca.Broadcaster):
        echo_sequence: int | None = None

        def send(self, *commands):
            if self.echo_sequence is not None:
                for command in commands:
                    if isinstance(command, ca.VersionResponse):
                        command.header.parameter1 = self.echo_sequence
            return super().send(*commands)

    class PromptContext(Context):
        CircuitClass = IndexedCircuit

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.broadcaster = SequenceEchoingBroadcaster(our_role=ca.SERVER)
            _serving.add(self)

        async def _broadcaster_queue_iteration(self, addr, commands):
            # caproto builds and sends the reply synchronously inside this call
            # (before its first await), so the number cannot be another datagram's
            garbage.collector.busy()
            self.broadcaster.echo_sequence = next(
                (c.header.parameter1 for c in commands if isinstance(c, ca.VersionRequest)), None)
            return await super()._broadcaster_queue_iteration(addr, commands)

        async def subscription_queue_loop(self):
            """caproto's loop, but the last update is not kept in a local variable until
            the next one: its Subscription held a departed client's circuit, with
            every channel on it (~270,000 objects after 1000 motors), as long as no
            other monitored PV changed."""
            queue = self.subscription_queue
            while True:
                await self._subscription_queue_iteration(*await queue.get())

        async def tcp_handler(self, client, addr):
            sock = client.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            return await super().tcp_handler(client, addr)

    return PromptContext


def run_ioc(name: str, groups: list, port: int, host: str = network.LOOPBACK,
            startup_hooks: Iterable = ()) -> None:
    """Serve ``groups`` on ``host:port`` until interrupted.

    ``startup_hooks`` are coroutine functions ``hook(async_lib)`` run once the
    server's event loop is up (for CA client links, periodic scans, ...).
    """
    network.apply(network.server_environment(port, host))
    # the IOC's own CA client (links to other IOCs) must stay on loopback too
    if "EPICS_CA_ADDR_LIST" not in os.environ:
        network.apply(network.client_environment(network.address_list([port], host)))
    else:
        os.environ.setdefault("EPICS_CA_AUTO_ADDR_LIST", "NO")
    Context = _context_class()
    pvdb = merge_pvdb(groups)
    hooks = list(startup_hooks)
    garbage.collector.install()     # full collections only when the clients are quiet

    async def serve():
        context = Context(pvdb, interfaces=[host])

        async def startup(async_lib):
            if context.port != port:
                print(f"FAILED {name}: port {port} is taken (got {context.port})", flush=True)
                raise SystemExit(2)
            collecting = asyncio.get_running_loop().create_task(garbage.collector.run())
            context._garbage_task = collecting      # held: the loop keeps only a weak reference
            for hook in hooks:
                await hook(async_lib)
            print(f"READY {name} port={context.port} pvs={len(pvdb)}", flush=True)

        await context.run(startup_hook=startup)

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
