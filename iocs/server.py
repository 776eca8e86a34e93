"""Run caproto PV groups as one IOC on one loopback port.

Each IOC process prints ``READY <name> port=<port> pvs=<count>`` on stdout once
it is serving, which :mod:`iocs.launcher` waits for (a bounded wait, no sleeps).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import sys
from typing import Iterable

from . import network

logger = logging.getLogger(__name__)


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
    """caproto's asyncio server Context, sending small CA messages at once.

    asyncio switches Nagle's algorithm off only for sockets whose ``proto`` is
    IPPROTO_TCP, and caproto's listening socket has proto 0: two monitor updates
    in a row (AcquireBusy 1 then 0, DMOV 0 then 1) then waited ~40 ms for the
    client's delayed ACK, which capped a triggered detector at ~20 frames/s.
    """
    from caproto.asyncio.server import Context

    class NoDelayContext(Context):
        async def tcp_handler(self, client, addr):
            sock = client.writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            return await super().tcp_handler(client, addr)

    return NoDelayContext


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
    # the PV database lives as long as the IOC: keep the garbage collector from
    # re-scanning it on every allocation burst (fields are created on demand)
    gc.freeze()

    async def serve():
        context = Context(pvdb, interfaces=[host])

        async def startup(async_lib):
            if context.port != port:
                print(f"FAILED {name}: port {port} is taken (got {context.port})", flush=True)
                raise SystemExit(2)
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
