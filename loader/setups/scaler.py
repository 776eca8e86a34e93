"""``scaler_channels``: name a scaler's channels, select them, export each one.

The names go to the IOC (the ``.NMn`` fields) only where the IOC has none yet,
unless ``overwrite: true``: on a real beamline the staff name channels in the
scaler screen when they plug cables in, and that choice wins.
"""
from __future__ import annotations

import keyword
import logging
from typing import Any, Mapping

from ._common import IDENTIFIER, put

logger = logging.getLogger(__name__)

options_schema = {
    "type": "object",
    "additionalProperties": False,
    "required": ["channels"],
    "properties": {
        "channels": {
            "type": "object", "minProperties": 1,
            "propertyNames": {"pattern": "^([1-9]|[12][0-9]|3[0-2])$",
                              "description": "a channel number 1..32"},
            "additionalProperties": {"type": "string", "pattern": IDENTIFIER, "maxLength": 39,
                                     "description": "a Python identifier of at most 39 characters "
                                                    "(an EPICS STRING field holds 40 bytes)"},
            "description": "channel number -> name, e.g. {1: timebase, 2: I0}",
        },
        "overwrite": {"type": "boolean", "description": "replace names the IOC already has"},
        "export": {"type": "boolean", "description": "export each named channel as its own object"},
        "labels": {"type": "array", "items": {"type": "string"},
                   "description": "labels given to the exported channels"},
    },
}


def scaler_channels(device, channels: Mapping[Any, str], overwrite: bool = False,
                    export: bool = True, labels=("counter", "channel")) -> dict[str, Any]:
    """Name channels (``{1: "timebase", 2: "I0", ...}``), ``select_channels()``, and
    return the named channel signals (``I0``, ``diode``, ...) to export."""
    for number, name in channels.items():
        channel = getattr(device.channels, f"chan{int(number):02d}")
        current = channel.chname.get()
        if current and current != name and not overwrite:
            logger.info("%s channel %s keeps the IOC's name %r (config says %r; overwrite: false)",
                        device.name, number, current, name)
            continue
        if current != name:
            put(channel.chname, name)
    device.select_channels()
    if not export:
        return {}
    exported: dict[str, Any] = {}
    for attr in device.channels.component_names:
        signal = getattr(device.channels, attr).s
        name = signal.name
        if not name:
            continue
        if not (name.isidentifier() and not keyword.iskeyword(name)):
            logger.warning("%s channel %s is named %r, not a Python identifier: not exported",
                           device.name, attr, name)
            continue
        # ophyd keeps an object's labels in _ophyd_labels_ (set by its constructor)
        signal._ophyd_labels_ = set(getattr(signal, "_ophyd_labels_", set())) | set(labels)
        exported[name] = signal
    return exported


scaler_channels.options_schema = options_schema
