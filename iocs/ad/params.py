"""areaDetector-style parameters served as caproto channels.

An areaDetector record pair is a setpoint ``Name`` and its read-back
``Name_RBV``.  A client put runs the parameter's hook (the driver's reaction),
then the read-back shows what the driver accepted.  When the driver itself
changes a parameter (a counter, a state), only the read-back moves, as in a real
IOC.  :class:`ParamGroup` holds one table of such parameters under one prefix and
exposes the ``pvdb`` that :func:`iocs.server.run_ioc` serves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from caproto import AccessRights, ChannelByte, ChannelChar, ChannelDouble, ChannelEnum
from caproto import ChannelInteger, ChannelString, SkipWrite

Hook = Callable[[Any], Awaitable[Any]]

NO_YES = ("No", "Yes")
DISABLE_ENABLE = ("Disable", "Enable")


@dataclass
class Param:
    """One areaDetector parameter.

    ``kind``: ``int`` (longout/longin), ``float`` (ao/ai), ``enum`` (bo/mbbo),
    ``str`` (stringout, 40 chars), ``char`` (char waveform string, e.g. paths),
    ``bytes`` (an unsigned-byte array, e.g. image data), ``ints`` (a long array).
    ``pair``: serve ``Name`` and ``Name_RBV``; otherwise a single PV ``Name``
    that is writable unless ``readonly``.
    """

    name: str
    kind: str = "int"
    value: Any = 0
    enum: tuple = ()
    pair: bool = True
    readonly: bool = False
    max_length: int = 256
    precision: int = 3
    units: str = ""


def rw(name: str, kind: str = "int", value: Any = 0, **kw) -> Param:
    """A setpoint with its ``_RBV`` read-back."""
    return Param(name, kind, value, pair=True, **kw)


def ro(name: str, kind: str = "int", value: Any = 0, **kw) -> Param:
    """A read-only PV, served under exactly ``name`` (usually ending in ``_RBV``)."""
    return Param(name, kind, value, pair=False, readonly=True, **kw)


def pv(name: str, kind: str = "int", value: Any = 0, **kw) -> Param:
    """A single writable PV without read-back (plain records, e.g. ``WaitForPlugins``)."""
    return Param(name, kind, value, pair=False, **kw)


def enum(name: str, choices: Iterable[str], value: int | str = 0, pair: bool = True,
         readonly: bool = False) -> Param:
    """A bo/mbbo (+ bi/mbbi read-back) with its menu strings."""
    choices = tuple(choices)
    if isinstance(value, int):
        value = choices[value]
    return Param(name, "enum", value, enum=choices, pair=pair and not readonly, readonly=readonly)


class _HookMixin:
    """Channel that runs its parameter's hook on a client put and can be read-only."""

    hook: Hook | None = None
    readonly: bool = False

    def check_access(self, hostname, username):
        if self.readonly:
            return AccessRights.READ
        return AccessRights.READ | AccessRights.WRITE

    async def verify_value(self, data):
        data = await super().verify_value(data)
        if self.readonly:
            raise PermissionError(f"{self.pvname} is read-only")
        if self.hook is not None:
            result = await self.hook(data)
            if result is not None:
                return result
        return data


def _channel_class(base):
    return type(f"Hooked{base.__name__}", (_HookMixin, base), {})


_CLASSES = {base: _channel_class(base) for base in
            (ChannelInteger, ChannelDouble, ChannelEnum, ChannelString, ChannelChar, ChannelByte)}


def _make_channel(param: Param, name: str, readonly: bool):
    kind = param.kind
    if kind == "int":
        cls, kw = ChannelInteger, {"value": int(param.value)}
    elif kind == "float":
        cls, kw = ChannelDouble, {"value": float(param.value), "precision": param.precision}
    elif kind == "enum":
        cls, kw = ChannelEnum, {"value": param.value, "enum_strings": list(param.enum)}
    elif kind == "str":
        cls, kw = ChannelString, {"value": str(param.value)}
    elif kind == "char":
        cls, kw = ChannelChar, {"value": str(param.value), "max_length": param.max_length}
    elif kind == "bytes":
        cls, kw = ChannelByte, {"value": param.value, "max_length": param.max_length}
    elif kind == "ints":
        cls, kw = ChannelInteger, {"value": list(param.value), "max_length": param.max_length}
    else:
        raise ValueError(f"unknown parameter kind {kind!r} for {param.name}")
    if param.units and kind in ("int", "float"):
        kw["units"] = param.units
    channel = _CLASSES[cls](**kw)
    channel.readonly = readonly
    channel.pvname = name
    return channel


@dataclass
class ParamGroup:
    """The parameters of one areaDetector port (``cam1:``, ``HDF1:``, ...) under ``prefix``."""

    prefix: str
    params: list[Param]
    pvdb: dict = field(default_factory=dict)

    def __post_init__(self):
        self._specs: dict[str, Param] = {}
        self._set: dict[str, Any] = {}     # setpoint channel by parameter name
        self._rbv: dict[str, Any] = {}     # read-back (or only) channel by parameter name
        for param in self.params:
            if param.name in self._specs:
                raise ValueError(f"parameter {param.name} declared twice in {self.prefix}")
            self._specs[param.name] = param
            if param.pair:
                sp = _make_channel(param, self.prefix + param.name, readonly=False)
                rb = _make_channel(param, self.prefix + param.name + "_RBV", readonly=True)
                self.pvdb[sp.pvname], self.pvdb[rb.pvname] = sp, rb
                self._set[param.name], self._rbv[param.name] = sp, rb
                sp.hook = self._pair_hook(param.name)
            else:
                ch = _make_channel(param, self.prefix + param.name, readonly=param.readonly)
                self.pvdb[ch.pvname] = ch
                self._set[param.name] = self._rbv[param.name] = ch
                ch.hook = self._single_hook(param.name)
        self._hooks: dict[str, Hook] = {}

    # -- driver side -------------------------------------------------------
    def on_put(self, name: str, hook: Hook) -> None:
        """Run ``await hook(value)`` when a client writes ``name``.

        The hook may return a corrected value (shown on the read-back), return
        ``None`` to accept the value, or raise to make the put fail.
        """
        if name not in self._specs:
            raise KeyError(f"{self.prefix}{name} is not a parameter")
        self._hooks[name] = hook

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str) -> Any:
        """The current (read-back) value."""
        return self._rbv[name].value

    def index(self, name: str) -> int:
        """The current menu index of an enum parameter."""
        return self._specs[name].enum.index(self._rbv[name].value)

    def channel(self, name: str, setpoint: bool = False):
        return (self._set if setpoint else self._rbv)[name]

    async def set(self, name: str, value: Any, setpoint: bool = False,
                  timestamp: float | None = None) -> None:
        """Change a parameter from the driver (read-back; also the setpoint if asked)."""
        value = self._coerce(name, value)
        ts = timestamp or time.time()
        channel = self._rbv[name]
        if self._specs[name].kind in ("bytes", "ints") or channel.value != value:
            await channel.write(value, verify_value=False, timestamp=ts)
        if setpoint and self._set[name] is not channel:
            await self._set[name].write(value, verify_value=False, timestamp=ts)

    def _coerce(self, name: str, value: Any) -> Any:
        spec = self._specs[name]
        if spec.kind == "enum" and isinstance(value, int):
            return spec.enum[value]
        if spec.kind == "int":
            return int(value)
        if spec.kind == "float":
            return float(value)
        return value

    # -- client side -------------------------------------------------------
    def _pair_hook(self, name: str) -> Hook:
        async def hook(value):
            handler = self._hooks.get(name)
            if handler is not None:
                result = await handler(value)
                if result is SkipWrite:
                    raise SkipWrite()
                if result is not None:
                    value = self._coerce(name, result)
            await self.set(name, value)
            return value
        return hook

    def _single_hook(self, name: str) -> Hook:
        async def hook(value):
            handler = self._hooks.get(name)
            if handler is None:
                return value
            result = await handler(value)
            if result is SkipWrite:
                raise SkipWrite()
            return value if result is None else self._coerce(name, result)
        return hook
