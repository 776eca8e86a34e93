"""Building blocks for simulated EPICS records: typed fields with put hooks, and SCAN.

A record is a set of caproto channels named ``<record>.<FIELD>`` (``VAL`` is also
served as the bare record name).  Fields carry the record's DBR type and menu
strings, a client put can run a hook (awaited before the put completes, so
put-completion means "done"), and :class:`Scanner` processes a record
periodically following its ``SCAN`` field, as an IOC's scan tasks do.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable, Optional

from caproto import AccessRights, ChannelType
from caproto import (ChannelByte, ChannelChar, ChannelData, ChannelDouble, ChannelEnum,
                     ChannelFloat, ChannelInteger, ChannelShort, ChannelString)

logger = logging.getLogger(__name__)

PutHook = Callable[[Any], Awaitable[None]]

#: dbCommon's menuScan, shared by every record type served here
SCAN_MENU = ("Passive", "Event", "I/O Intr", "10 second", "5 second", "2 second",
             "1 second", ".5 second", ".2 second", ".1 second")
YES_NO = ("No", "Yes")


def scan_period(choice: str) -> Optional[float]:
    """Seconds between periodic scans for a SCAN menu choice, None if not periodic."""
    return float(choice.split()[0]) if choice.endswith("second") else None


class _Field:
    """Mixin: a put hook for client writes, and optional read-only access."""

    def __init__(self, *args, on_put: Optional[PutHook] = None, read_only: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_put = on_put
        self.read_only = read_only

    def check_access(self, hostname, username):
        return AccessRights.READ if self.read_only else AccessRights.READ | AccessRights.WRITE

    async def auth_write(self, *args, **kwargs):
        result = await super().auth_write(*args, **kwargs)
        if self.on_put is not None:
            await self.on_put(self.value)
        return result


def _field_class(base: type) -> type:
    return type(f"Field{base.__name__[7:]}", (_Field, base), {})


FIELD_CLASSES = {cls: _field_class(cls) for cls in (
    ChannelByte, ChannelChar, ChannelDouble, ChannelEnum, ChannelFloat, ChannelInteger,
    ChannelShort, ChannelString)}
_KIND = {
    "double": ChannelDouble, "float": ChannelFloat, "long": ChannelInteger, "short": ChannelShort,
    "uchar": ChannelByte, "enum": ChannelEnum, "string": ChannelString, "char": ChannelChar,
}
_CHANNEL_TYPES = {ChannelType.DOUBLE: ChannelDouble, ChannelType.ENUM: ChannelEnum,
                  ChannelType.LONG: ChannelInteger, ChannelType.STRING: ChannelString}


class Record:
    """The channels of one record; ``pvdb`` is what the server serves."""

    def __init__(self, name: str, record_type: str):
        self.name = name
        self.record_type = record_type
        self.fields: dict[str, ChannelData] = {}
        self._started = False
        self.startup_callbacks: list[Callable[[], Awaitable[None]]] = []
        add_common_fields(self)

    def add(self, field: str, kind: str, value: Any = None, *, enum_strings: Iterable[str] = (),
            on_put: Optional[PutHook] = None, read_only: bool = False, precision: int = 0,
            max_length: Optional[int] = None, units: str = "") -> ChannelData:
        """Add (or replace) a field; ``kind`` is a DBF type name (double, enum, string, ...)."""
        base = _KIND[kind]
        cls = FIELD_CLASSES[base]
        kwargs: dict = dict(on_put=on_put, read_only=read_only)
        if base is ChannelEnum:
            strings = tuple(enum_strings)
            if isinstance(value, int):
                value = strings[value]
            kwargs.update(enum_strings=strings, value=value if value is not None else strings[0])
        elif base is ChannelString:
            kwargs.update(value="" if value is None else str(value))
        elif base is ChannelChar:
            kwargs.update(value="" if value is None else str(value), max_length=max_length or 40,
                          report_as_string=True)
        elif base in (ChannelDouble, ChannelFloat):
            kwargs.update(value=float(value or 0.0), precision=precision, units=units)
        elif base is ChannelByte:        # DBF_UCHAR: one unsigned byte, zero included
            kwargs.update(value=int(value or 0), strip_null_terminator=False)
        else:
            kwargs.update(value=int(value or 0), units=units)
        channel = cls(**kwargs)
        self.fields[field] = channel
        return channel

    def __getitem__(self, field: str) -> Any:
        return self.fields[field].value

    def initial(self, field: str, value: Any) -> None:
        """Set a field's value before the IOC serves it (no monitor to post yet)."""
        self.fields[field]._data["value"] = value

    async def set(self, field: str, value: Any) -> None:
        """Write a field from inside the IOC (no put hook), posting a monitor."""
        channel = self.fields[field]
        if isinstance(channel, ChannelEnum) and isinstance(value, int):
            value = channel.enum_strings[value]
        await channel.write(value)

    @property
    def pvdb(self) -> dict[str, ChannelData]:
        db = {f"{self.name}.{field}": channel for field, channel in self.fields.items()}
        if "VAL" in self.fields:
            db[self.name] = self.fields["VAL"]
            self.fields["VAL"].server_startup = self._server_startup
        return db

    async def _server_startup(self, async_lib) -> None:
        if self._started:          # served under two names: called twice
            return
        self._started = True
        for callback in self.startup_callbacks:
            try:
                await callback()
            except Exception:
                logger.exception("startup of %s failed", self.name)


def add_common_fields(record: Record) -> None:
    """dbCommon fields, with the types and menus caproto's record definitions give them."""
    from caproto.server.records import base

    for klass in reversed(base.RecordFieldGroup.__mro__):
        for prop in vars(klass).values():
            spec = getattr(prop, "pvspec", None)
            if spec is None:
                continue
            dtype = spec.dtype
            channel_cls = (_CHANNEL_TYPES[dtype] if isinstance(dtype, ChannelType) else
                           next(c for c in dtype.__mro__ if c.__module__ == "caproto._data"))
            kwargs = dict(spec.cls_kwargs or {})
            kwargs.pop("report_as_string", None)
            value = spec.value
            if channel_cls is ChannelChar:
                kind, extra = "char", dict(max_length=spec.max_length)
            else:
                kind = next(k for k, c in _KIND.items() if c is channel_cls)
                extra = {}
            if isinstance(value, bytes):
                value = int(value)
            record.add(spec.name, kind, value, enum_strings=kwargs.get("enum_strings", ()),
                       read_only=bool(spec.read_only), **extra)
    record.add("NAME", "char", record.name, max_length=61, read_only=True)
    record.add("RTYP", "string", record.record_type, read_only=True)


class Scanner:
    """Process a record every SCAN period (restarted whenever SCAN changes)."""

    def __init__(self, record: Record, process: Callable[[], Awaitable[None]]):
        self.record = record
        self.process = process
        self._task: Optional[asyncio.Task] = None
        record.fields["SCAN"].on_put = self.scan_changed
        record.startup_callbacks.append(self.restart)

    async def scan_changed(self, value) -> None:
        await self.restart()

    async def restart(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        period = scan_period(self.record["SCAN"])
        if period is not None:
            self._task = asyncio.get_running_loop().create_task(self._loop(period))

    async def _loop(self, period: float) -> None:
        loop = asyncio.get_running_loop()
        next_time = loop.time()
        while True:
            next_time += period
            try:
                await self.process()
            except Exception:
                logger.exception("processing %s failed", self.record.name)
            await asyncio.sleep(max(0.0, next_time - loop.time()))
            next_time = max(next_time, loop.time() - period)
