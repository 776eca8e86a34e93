"""Channel Access environment for loopback-only servers and clients.

Several caproto servers cannot share one port on one host, so every IOC gets its
own port and clients list ``127.0.0.1:PORT`` for each.  Nothing here ever points
at a broadcast or non-loopback address.
"""
from __future__ import annotations

import os
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


def free_port(host: str = LOOPBACK) -> int:
    """A port that is free for both TCP and UDP on ``host`` (CA servers use both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind((host, port))
        except OSError:
            continue
        if port not in (5064, 5065):
            return port
    raise RuntimeError("could not find a free TCP+UDP port on %s" % host)


def port_answers(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
