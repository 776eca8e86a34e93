"""Small helpers shared by the setup actions."""
from __future__ import annotations

import numbers
import random
import time
from typing import Any, Sequence

import numpy as np

IDENTIFIER = "^[A-Za-z_][A-Za-z0-9_]*$"

#: JSON Schema of a number option that may be drawn at random: ``3`` or ``{uniform: [lo, hi]}``.
NUMBER_OR_RANDOM = {
    "oneOf": [
        {"type": "number"},
        {"type": "object", "additionalProperties": False, "required": ["uniform"],
         "properties": {"uniform": {"type": "array", "minItems": 2, "maxItems": 2,
                                    "items": {"type": "number"}}}},
    ],
    "description": "a number, or {uniform: [low, high]} for a random one",
}

PUT_TIMEOUT = 5.0

#: An EPICS STRING field (DBF_STRING, e.g. a swait INAN link or a scaler NMn) holds
#: 40 bytes including the terminating NUL: at most 39 characters survive a put.
STRING_FIELD_CHARS = 39


class SetupValueError(ValueError):
    """A setup option cannot be written to its EPICS field as given (never truncated or coerced)."""


def number(value: Any, rng: random.Random | None = None) -> float:
    """``value`` itself, or a uniform random number when it is ``{uniform: [lo, hi]}``."""
    if isinstance(value, dict) and "uniform" in value:
        low, high = value["uniform"]
        return (rng or random).uniform(float(low), float(high))
    return float(value)


def check_string_field(value: str, pvname: str, what: str = "value") -> None:
    """Refuse a string an EPICS STRING field would silently cut short."""
    size = len(str(value).encode("utf-8"))
    if size > STRING_FIELD_CHARS:
        raise SetupValueError(
            f"{what} {value!r} is {size} characters, too long for the EPICS STRING field "
            f"{pvname} (expected at most {STRING_FIELD_CHARS} characters); not written")


def field_pv(signal) -> str:
    """The PV a write to ``signal`` goes to, for messages (its name if it has none)."""
    return getattr(signal, "setpoint_pvname", None) or getattr(signal, "pvname", signal.name)


def checked(signal, value, current):
    """``value`` if ``signal``'s field, which holds ``current``, can hold it unchanged,
    else ``SetupValueError``.

    Numbers for numeric fields, enum strings from the record's menu, and strings
    that fit a STRING field: anything else would be refused or truncated by CA.
    """
    pvname = field_pv(signal)
    enum_strs = getattr(signal, "enum_strs", None)
    if enum_strs and isinstance(value, str):
        if value not in enum_strs:
            raise SetupValueError(f"{value!r} is not a choice of the menu field {pvname} "
                                  f"(expected one of: {', '.join(map(repr, enum_strs))})")
        return value
    if isinstance(current, str):
        check_string_field(value, pvname)
        return value
    if isinstance(current, (bool, int, float, numbers.Number)) and not isinstance(value, numbers.Number):
        raise SetupValueError(f"{value!r} is not a number; field {pvname} is numeric "
                              f"(expected a {'integer' if isinstance(current, numbers.Integral) else 'number'})")
    return value


def put(signal, value, timeout: float = PUT_TIMEOUT) -> None:
    """Write ``value`` (checked against the field first) and wait (bounded) until the IOC has taken it."""
    put_all([(signal, value)], timeout)


def put_all(writes: Sequence[tuple[Any, Any]], timeout: float = PUT_TIMEOUT) -> None:
    """Write each ``(signal, value)`` in order, then wait (bounded, one deadline for
    all) until the IOC has taken every one.

    Why together: written one at a time, each field cost a connection wait, a get
    to check the value, a put and ophyd's readback poll in a thread of its own
    (4-6 ms), and a setup writes up to 21 fields.  Here the fields are read once
    together, every value is checked before anything is written, the puts go out
    back to back with put completion (one circuit: the IOC takes them in order),
    each followed by a get of its readback, and the readbacks are compared once
    all have completed.
    """
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(deadline - time.monotonic(), 0.001)

    signals = [signal for signal, _ in writes]
    for signal in signals:
        if hasattr(signal, "wait_for_connection"):
            signal.wait_for_connection(timeout=left())   # enum strings and type known from here on
    values = [checked(signal, value, current)
              for (signal, value), current in zip(writes, read_together(signals, left()))]
    for signal, value in zip(signals, values):
        _within_limits(signal, value)
    statuses, reads = [], []
    for signal, value in zip(signals, values):
        statuses.append(_start_put(signal, value, left()))
        # asked right behind its put, on the same circuit: the IOC answers with what the
        # put left, before another writer (the AD spot's dither, every second) lands
        reads.append(_request_read(signal))
    for status in statuses:
        status.wait(timeout=left())
    _wait_taken(list(zip(signals, values)), deadline, _collect_reads(signals, reads, left()))


def _within_limits(signal, value) -> None:
    """ophyd's own check of a value against the field's control limits (a motor's
    setpoint), made before any put: ophyd would make it at the put, after the
    step's earlier fields were already written."""
    check = getattr(signal, "check_value", None)
    if check is None:
        return
    try:
        check(value)
    except ValueError as exc:      # ophyd's LimitError is one
        pvname = field_pv(signal)
        raise SetupValueError(f"{pvname}: {exc}; nothing written") from None


def read_together(signals: Sequence[Any], timeout: float) -> list:
    """What each signal reads now, as ophyd's ``get`` gives it (an ``as_string``
    signal's text, a menu's index), with every request in flight at once: one
    after another, a get costs a round trip and pyepics' busy wait (~1.6 ms).

    The connected signal's channel comes from pyepics' cache (``create_channel``
    of a known name returns it); a signal that is not an EPICS one is asked itself.
    """
    return _collect_reads(signals, [_request_read(signal) for signal in signals], timeout)


def _request_read(signal):
    """Send a get of ``signal``'s read PV; its channel, or ``None`` for a soft signal."""
    from epics import ca
    from ophyd.signal import EpicsSignalBase
    if not isinstance(signal, EpicsSignalBase):
        return None
    chid = ca.create_channel(signal.pvname)
    ca.get(chid, wait=False)
    return chid


def _collect_reads(signals: Sequence[Any], chids: Sequence[Any], timeout: float) -> list:
    """The replies to :func:`_request_read`, in ophyd's types."""
    from epics import ca
    from ophyd.utils.epics_pvs import waveform_to_string
    deadline = time.monotonic() + timeout
    values = []
    for signal, chid in zip(signals, chids):
        if chid is None:
            values.append(signal.get())
            continue
        value = ca.get_complete(chid, timeout=max(deadline - time.monotonic(), 0.001))
        if value is None:
            raise TimeoutError(f"{signal.pvname}: no reply to a get within {timeout:.1f} s")
        values.append(waveform_to_string(value) if signal.as_string and not isinstance(value, str) else value)
    return values


def _start_put(signal, value, timeout: float):
    """A status done when the IOC has processed the put (EPICS put completion)."""
    from ophyd import EpicsSignal
    from ophyd.status import Status
    if not isinstance(signal, EpicsSignal):      # a soft signal: ophyd's own set
        return signal.set(value, timeout=timeout)
    status = Status(signal, timeout=timeout)
    signal.put(value, use_complete=True, callback=lambda **_: status.set_finished())
    return status


def _wait_taken(writes: list[tuple[Any, Any]], deadline: float, currents: list) -> None:
    """Wait until every signal reads back its value (``currents``: the first reads;
    a ``_RBV`` may trail its put completion).  One that still does not when time is
    up was clamped or refused by the IOC: say which, with what it holds."""
    delay = 0.002
    while True:
        differing = [(signal, value, current) for (signal, value), current in zip(writes, currents)
                     if not _same(signal, value, current)]
        if not differing:
            return
        if time.monotonic() >= deadline:
            signal, value, current = differing[0]
            pvname = field_pv(signal)
            raise SetupValueError(f"{pvname}: wrote {value!r}, the IOC holds {current!r}")
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
        delay = min(delay * 2, 0.1)
        writes = [(signal, value) for signal, value, _ in differing]
        # a read started at the deadline still gets its round trip
        currents = read_together([signal for signal, _ in writes], max(deadline - time.monotonic(), 0.5))


def _same(signal, value, current) -> bool:
    """Whether the readback ``current`` is the ``value`` written (a menu field reads
    back its index; a numeric field within the signal's ``tolerance``, if it has one)."""
    enum_strs = getattr(signal, "enum_strs", None) or ()
    if enum_strs and isinstance(value, str) and isinstance(current, numbers.Integral):
        return 0 <= current < len(enum_strs) and enum_strs[current] == value
    tolerance = getattr(signal, "tolerance", None)
    if tolerance is not None and isinstance(value, numbers.Number) and isinstance(current, numbers.Number):
        return abs(current - value) <= tolerance
    return bool(np.all(np.asarray(current == value)))


def field_signal(device, field: str):
    """The signal of ``device`` on the record field ``field`` (e.g. ``.SREV``)."""
    target = f"{device.prefix}{field}"
    for walk in device.walk_signals(include_lazy=True):
        sig = walk.item
        if getattr(sig, "setpoint_pvname", None) == target or getattr(sig, "pvname", None) == target:
            return sig
    raise LookupError(f"{device.name} ({type(device).__name__}) has no component on {target}")
