"""Channel Access environment for loopback-only servers and clients.

Several caproto servers cannot share one port on one host, so every IOC gets its
own port and clients list ``127.0.0.1:PORT`` for each.  Nothing here ever points
at a broadcast or non-loopback address.
"""
from __future__ import annotations

import os
import random
import socket
from typing import Iterable, Mapping, MutableMapping

LOOPBACK = "127.0.0.1"


def address_list(ports: Iterable[int], host: str = LOOPBACK) -> str:
    """The value of ``EPICS_CA_ADDR_LIST`` that reaches the IOCs on ``ports``."""
    return " ".join(f"{host}:{int(port)}" for port in ports)


def client_environment(addr_list: str, max_array_bytes: int = 50_000_000) -> dict[str, str]:
    """Variables a CA client (libca, caproto) needs to search only ``addr_list``."""
    return {
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_ADDR_LIST": addr_list,
        "EPICS_CA_MAX_ARRAY_BYTES": str(max_array_bytes),
    }


def server_environment(port: int, host: str = LOOPBACK) -> dict[str, str]:
    """Variables a caproto server needs to listen on ``host:port`` and beacon only there."""
    return {
        "EPICS_CAS_INTF_ADDR_LIST": host,
        "EPICS_CAS_SERVER_PORT": str(int(port)),
        "EPICS_CA_SERVER_PORT": str(int(port)),   # the variable caproto's server reads
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CAS_BEACON_ADDR_LIST": host,
    }


def apply(env: Mapping[str, str], target: MutableMapping[str, str] | None = None) -> None:
    """Copy ``env`` into ``os.environ`` (must happen before the first CA call)."""
    (os.environ if target is None else target).update(env)


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
RESERVED_PORTS = (5064, 5065)     # CA's own server and repeater ports


def ephemeral_ports(path: str = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the OS gives sockets that bind port 0 or send unbound (Linux's
    setting; IANA's dynamic range, which macOS and Windows use, elsewhere)."""
    try:
        with open(path) as f:
            low, high = (int(word) for word in f.read().split())
    except (OSError, ValueError):
        low, high = 49152, 65535
    return range(low, high + 1)


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free for both TCP and UDP on ``host`` (CA servers use both),
    chosen outside the OS's ephemeral range.

    A client's UDP socket with SO_REUSEADDR (caproto's clients set it) that the OS
    binds for its first datagram may get any ephemeral port some other SO_REUSEADDR
    socket holds, an IOC's search port included (about one socket in 10,000 here);
    the IOC then receives that client's search replies itself, and the client
    times out (a failed CI run).  Outside the ephemeral range the OS never picks it.
    """
    ephemeral = ephemeral_ports()
    below, above = range(10000, ephemeral.start), range(ephemeral.stop, 65536)
    pool = below if len(below) >= len(above) else above
    choose = random.SystemRandom().choice
    for _ in range(200):
        port = choose(pool) if pool else 0     # an OS that lends every port: its choice
        if port in RESERVED_PORTS:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind((host, port))
                port = tcp.getsockname()[1]
                udp.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"could not find a free TCP+UDP port on {host} "
                       f"in {pool.start}-{pool.stop - 1}")


def port_answers(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
