"""The simulated IOCs' ports, and the link client's search socket, cannot be lent
to another socket: a client socket on an IOC's port never sees its search replies.

caproto's clients set SO_REUSEADDR on their search sockets, and Linux then lets the
OS bind such a socket, for its first datagram, to any ephemeral port another
SO_REUSEADDR socket holds (an IOC's UDP port included).  A CI run failed that way:
``caproto.sync.client.read`` timed out searching a PV the gp: IOC served.
"""
from __future__ import annotations

import asyncio

import caproto as ca
import pytest
from caproto.sync.client import search

from iocs import links, network


def test_free_ports_are_outside_the_range_the_os_lends(gp_ioc):
    ephemeral = network.ephemeral_ports()
    ports = [network.free_port() for _ in range(50)] + [gp_ioc.port]
    assert not [port for port in ports if port in ephemeral]
    assert not set(ports) & {5064, 5065}


def test_a_client_socket_on_the_ioc_port_never_gets_its_search_reply(gp_ioc, monkeypatch):
    """What an IOC port inside the ephemeral range risked (the CI failure above)."""
    monkeypatch.setenv("EPICS_CA_ADDR_LIST", f"127.0.0.1:{gp_ioc.port}")
    with ca.bcast_socket() as elsewhere:
        elsewhere.bind(("0.0.0.0", 0))
        assert search("gp:userCalc6.A", elsewhere, timeout=5) == ("127.0.0.1", gp_ioc.port)
    with ca.bcast_socket() as on_the_ioc_port:
        on_the_ioc_port.bind(("0.0.0.0", gp_ioc.port))     # allowed: both set SO_REUSEADDR
        with pytest.raises(ca.CaprotoTimeoutError):
            search("gp:userCalc6.A", on_the_ioc_port, timeout=1)


def test_no_other_client_socket_can_share_the_link_client_port():
    """The gp: IOC's links search from this socket; one sharing its port would
    take the replies to the other (the more specific binding gets them)."""
    async def bind_beside_a_link_socket() -> None:
        broadcaster = links._loopback_broadcaster()
        await broadcaster._create_socket()
        try:
            port = broadcaster.udp_sock.getsockname()[1]
            with ca.bcast_socket() as other, pytest.raises(OSError):
                other.bind(("0.0.0.0", port))
        finally:
            broadcaster.wrapped_transport.close()

    asyncio.run(bind_beside_a_link_socket())
