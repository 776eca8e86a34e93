"""Run caproto PV groups as one IOC on one loopback port.

Each IOC process prints ``READY <name> port=<port> pvs=<count>`` on stdout once
it is serving, which :mod:`iocs.launcher` waits for (a bounded wait, no sleeps).
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
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
    from caproto.asyncio.server import Context

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
