"""A burst of requests on one circuit: every reply comes, in order, and other
clients are still answered meanwhile (``iocs/server.py`` holds replies back while
a circuit has more requests queued, and lets other tasks run every
``YIELD_EVERY`` requests).  Spoken as libca speaks it, over TCP, with caproto's
own client-side state machine: the real simulated ``gp:`` IOC, no pyepics."""
from __future__ import annotations

import socket
import threading
import time

import caproto as ca
import pytest

PV = "gp:gp:float17"      # a general-purpose soft PV no other test uses
TIMEOUT = 60.0


class RawClient:
    """One TCP circuit to the IOC, with one channel created on it."""

    def __init__(self, port: int, name: str = PV):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.circuit = ca.VirtualCircuit(our_role=ca.CLIENT, address=("127.0.0.1", port), priority=0)
        self.channel = ca.ClientChannel(name, self.circuit, cid=1)
        self._pending: list = []
        self.send(ca.VersionRequest(priority=0, version=13), ca.HostNameRequest("localhost"),
                  ca.ClientNameRequest("burst-test"), self.channel.create())
        while not isinstance(self.next_command(), ca.CreateChanResponse):
            pass

    def send(self, *commands) -> None:
        self.sock.sendall(self.encode(*commands))

    def encode(self, *commands) -> bytes:
        return b"".join(self.circuit.send(*commands))

    def commands(self) -> list:
        """The commands of whatever the IOC has sent (waits for some)."""
        data = self.sock.recv(1 << 16)
        assert data, "the IOC closed the circuit"
        commands, _ = self.circuit.recv(data)
        for command in commands:
            self.circuit.process_command(command)
        return commands

    def next_command(self):
        while not self._pending:
            self._pending = list(self.commands())
        return self._pending.pop(0)

    def close(self) -> None:
        self.sock.close()


def _reads(client: RawClient, count: int) -> list:
    return [client.channel.read(ioid=i) for i in range(count)]


@pytest.mark.parametrize("count", [200, 3000])
def test_a_burst_of_reads_is_answered_in_full_and_in_order(gp_ioc, count):
    """200 reads fit one 4 KiB read of the IOC, so all are queued at once and their
    replies are held back until the queue is empty; 3000 arrive over several reads
    and pass the size limit.  A put without notification (no reply) ends the burst."""
    client = RawClient(gp_ioc.port)
    try:
        client.send(*_reads(client, count), client.channel.write([1.5], notify=False))
        ioids = []
        client.sock.settimeout(10)
        deadline = time.monotonic() + TIMEOUT
        while len(ioids) < count and time.monotonic() < deadline:
            reply = client.next_command()
            if isinstance(reply, ca.ReadNotifyResponse):
                ioids.append(reply.ioid)
        assert ioids == list(range(count))
    finally:
        client.close()


def test_one_clients_burst_does_not_hold_up_another_client(gp_ioc):
    """While the IOC works through 20,000 reads of one client, a second client's
    read is answered after a few hundred of them at most, not after the burst (or
    the part of it the IOC had already received)."""
    busy, other = RawClient(gp_ioc.port), RawClient(gp_ioc.port)
    count = 20000
    answered = 0
    done = threading.Event()

    def read_replies():
        nonlocal answered
        while answered < count:
            answered += sum(isinstance(c, ca.ReadNotifyResponse) for c in busy.commands())
        done.set()

    burst = busy.encode(*_reads(busy, count))       # before the reader thread uses the circuit
    reader = threading.Thread(target=read_replies, daemon=True)
    try:
        reader.start()
        busy.sock.sendall(burst)
        other.send(other.channel.read(ioid=0))
        while not isinstance(other.next_command(), ca.ReadNotifyResponse):
            pass
        answered_before_other = answered
        assert done.wait(TIMEOUT), f"{answered} of {count} reads answered"
        assert answered_before_other < 2000, (
            f"the other client was answered only after {answered_before_other} of the burst's {count} reads")
    finally:
        busy.close()
        other.close()


def test_replies_held_back_keep_their_order_behind_a_slow_client():
    """Replies are held back while the circuit has requests queued, and sent at the
    next pass of the event loop at the latest.  While another send waits for a slow
    client (its TCP buffers full), a reply that was already taken for sending waits
    for it too: the held-back replies after it must not overtake it (a newer monitor
    update before an older one leaves the client with the older value).  The IOC's
    own circuit class on a real loopback socket; the client reads nothing until the
    end, and the queued request is only a placeholder (nothing handles it)."""
    import asyncio

    from caproto.asyncio.utils import _TransportWrapper

    from iocs.server import _context_class

    async def scenario() -> bytes:
        received = bytearray()
        slow_client_reads = asyncio.Event()

        async def slow_client(reader, writer):
            await slow_client_reads.wait()
            while data := await reader.read(1 << 20):
                received.extend(data)

        server = await asyncio.start_server(slow_client, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        circuit = _context_class().CircuitClass(
            ca.VirtualCircuit(our_role=ca.SERVER, address=("127.0.0.1", 0), priority=0),
            _TransportWrapper(reader, writer), None)
        big = asyncio.create_task(circuit._send_buffers(b"B" * (16 << 20)))  # fills the buffers
        await asyncio.sleep(0.2)
        assert not big.done(), "the client's buffers did not fill"
        older = asyncio.create_task(circuit._send_buffers(b"older"))   # taken, waits for the big one
        await asyncio.sleep(0)
        circuit.command_queue.put_nowait(object())                      # more requests queued
        await circuit._send_buffers(b"newer")                           # held back
        await asyncio.sleep(0.1)                                        # a pass of the event loop
        slow_client_reads.set()
        await asyncio.wait_for(asyncio.gather(big, older), TIMEOUT)
        writer.close()
        await asyncio.sleep(0.2)
        server.close()
        return bytes(received)

    received = asyncio.run(scenario())
    assert received.count(b"older") == 1 and received.count(b"newer") == 1
    assert received.index(b"older") < received.index(b"newer"), f"sent as ...{received[-20:]!r}"
