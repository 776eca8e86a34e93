"""Record links that follow any PV over Channel Access, from inside the IOC's event loop.

An input link monitors its PV (local, like ``gp:m1.RBV``, or on another IOC, like
``ad:cam1:PeakStartX_RBV``) and hands every new value to its record; an output
link writes to its PV.  Both use one caproto asyncio client per IOC process,
which searches the addresses in ``EPICS_CA_ADDR_LIST`` (set by the launcher to
every simulated IOC's loopback port), re-searches and resubscribes when the
other IOC comes back, and never blocks the server: an unreachable PV only shows
in the link's status.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import os
import weakref
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

logger = logging.getLogger(__name__)

STATUS_PERIOD = 0.5          # seconds between link-status refreshes
PUT_TIMEOUT = 2.0
# caproto retries "retired" searches only every 60 s by default; an IOC that comes
# back should be found again within seconds (read when caproto's client is imported)
os.environ.setdefault("CAPROTO_CLIENT_RETRY_RETIRED_SEARCHES_INTERVAL_SEC", "5")


class LinkStatus(enum.Enum):
    """What a record reports in its link-status fields (INAV..., OUTV)."""

    NONE = "none"            # no link configured
    CONSTANT = "constant"    # a number, not a PV
    NOT_CONNECTED = "not connected"
    CONNECTED = "connected"  # a PV on another IOC
    LOCAL = "local"          # a PV served by this IOC


@dataclass(frozen=True)
class LinkTarget:
    """A parsed link field: ``"gp:m1.RBV CP NMS"``, ``"1.5"`` or ``""``."""

    pvname: Optional[str] = None
    constant: Optional[float] = None
    flags: frozenset = frozenset()

    @classmethod
    def parse(cls, text: str) -> "LinkTarget":
        words = str(text or "").strip().split()
        if not words:
            return cls()
        try:
            return cls(constant=float(words[0]))
        except ValueError:
            return cls(pvname=words[0], flags=frozenset(w.upper() for w in words[1:]))


_client = None
_links: "weakref.WeakSet[_Link]" = weakref.WeakSet()
_status_task: Optional[asyncio.Task] = None


def _loopback_broadcaster():
    """caproto's search broadcaster, its UDP socket bound to the interface the IOC
    serves on (127.0.0.1 by default) instead of every interface, and without
    SO_REUSEADDR: caproto sets it, and another client's socket with it set (a
    caproto sync client's, bound by the OS for its first datagram) could then be
    given this socket's port and have its search replies delivered here."""
    import socket

    from caproto.asyncio.client import SharedBroadcaster

    host = os.environ.get("EPICS_CAS_INTF_ADDR_LIST", "127.0.0.1").split()[0]

    class LoopbackBroadcaster(SharedBroadcaster):
        async def _create_socket(self):
            self.udp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            self.udp_sock.bind((host, 0))
            await self._create_transport()

    return LoopbackBroadcaster()


async def client_context():
    """The IOC's one caproto asyncio client context (created in the running loop)."""
    global _client, _status_task
    if _client is None:
        from caproto.asyncio.client import Context
        _client = Context(broadcaster=_loopback_broadcaster(), timeout=PUT_TIMEOUT)
        _status_task = asyncio.get_running_loop().create_task(_refresh_statuses())
    return _client


async def _refresh_statuses() -> None:
    """Disconnections are not always reported as events, so statuses are polled."""
    while True:
        await asyncio.sleep(STATUS_PERIOD)
        for link in list(_links):
            try:
                await link.refresh_status()
            except Exception:
                logger.exception("link status of %s", link.target)


def _own_port() -> Optional[int]:
    port = os.environ.get("EPICS_CA_SERVER_PORT")
    return int(port) if port and port.isdigit() else None


def _value_of(response) -> Optional[float]:
    """First element of a CA event as a number (enum index, numeric string), else None."""
    data = getattr(response, "data", None)
    if data is None or len(data) == 0:
        return None
    item = data[0]
    if isinstance(item, bytes):
        item = item.decode("latin-1").strip("\x00 ")
    try:
        return float(item)
    except (TypeError, ValueError):
        return None


StatusCallback = Callable[[LinkStatus], Awaitable[None]]


class _Link:
    def __init__(self, on_status: Optional[StatusCallback] = None):
        self.target = LinkTarget()
        self.status = LinkStatus.NONE
        self.pv = None
        self.on_status = on_status
        _links.add(self)

    def _current_status(self) -> LinkStatus:
        if self.target.constant is not None:
            return LinkStatus.CONSTANT
        if self.target.pvname is None:
            return LinkStatus.NONE
        pv = self.pv
        if pv is None or not pv.connected:
            return LinkStatus.NOT_CONNECTED
        try:
            host, port = pv.circuit_manager.circuit.address
        except Exception:
            return LinkStatus.CONNECTED
        return LinkStatus.LOCAL if port == _own_port() else LinkStatus.CONNECTED

    async def refresh_status(self) -> None:
        status = self._current_status()
        if status != self.status:
            self.status = status
            if self.on_status is not None:
                await self.on_status(status)

    async def _connect(self, text: str) -> LinkTarget:
        await self._disconnect()
        self.target = LinkTarget.parse(text)
        if self.target.pvname:
            context = await client_context()
            (self.pv,) = await context.get_pvs(self.target.pvname)
        await self.refresh_status()
        return self.target

    async def _disconnect(self) -> None:
        self.pv = None


class InputLink(_Link):
    """Follows a PV by monitor; ``on_value(value)`` is awaited for every update."""

    def __init__(self, on_value: Callable[[float], Awaitable[None]],
                 on_status: Optional[StatusCallback] = None):
        super().__init__(on_status)
        self.on_value = on_value
        self.value: Optional[float] = None
        self._subscription = None
        self._token = None

    async def set_target(self, text: str) -> LinkTarget:
        """Point the link at ``text`` (PV name with flags, a constant, or empty)."""
        target = await self._connect(text)
        if target.constant is not None:
            self.value = target.constant
            await self.on_value(target.constant)
        elif self.pv is not None:
            self._subscription = self.pv.subscribe()
            self._token = self._subscription.add_callback(self._event)
            self._first = asyncio.get_running_loop().create_task(
                self._first_value(self.pv, self._subscription))
        return target

    async def _first_value(self, pv, subscription) -> None:
        """Read the value as soon as the PV connects (the first monitor may come later)."""
        try:
            await pv.wait_for_connection(timeout=None)
            response = await pv.read(timeout=PUT_TIMEOUT)
        except Exception:
            return
        await self._event(subscription, response)

    async def _disconnect(self) -> None:
        sub, token = self._subscription, self._token
        self._subscription = self._token = None
        if getattr(self, "_first", None) is not None:
            self._first.cancel()
            self._first = None
        if sub is not None and token is not None:
            try:
                await sub.remove_callback(token)
            except Exception:
                logger.debug("unsubscribing %s", self.target.pvname, exc_info=True)
        await super()._disconnect()

    async def _event(self, sub, response) -> None:
        if sub is not self._subscription:
            return
        value = _value_of(response)
        if value is None:
            return
        self.value = value
        await self.refresh_status()
        await self.on_value(value)


class OutputLink(_Link):
    """Writes values to a PV without ever waiting on it."""

    async def set_target(self, text: str) -> LinkTarget:
        return await self._connect(text)

    def put(self, value: float) -> bool:
        """Send ``value`` (in the background); False when there is nowhere to send it."""
        pv = self.pv
        if pv is None or not pv.connected:
            return False
        asyncio.get_running_loop().create_task(self._put(pv, value))
        return True

    async def _put(self, pv, value: float) -> None:
        from caproto import ChannelType
        try:
            native = pv.channel.native_data_type
            data = [repr(value).encode()] if native in (ChannelType.STRING, ChannelType.CHAR) \
                else [value]
            await asyncio.wait_for(pv.write(data, wait=False), PUT_TIMEOUT)
        except Exception as exc:
            logger.warning("output link %s: %s", pv.name, exc)
