"""The happi container for this project's device entries.

Registered through the ``happi.containers`` entry point (``beamline = loader.containers``),
so happi names it ``beamline.containers.BeamlineItem`` and ``happi search`` can
match the fields the loader selects on: ``beamline``, ``labels``, ``prefix``.
"""
from __future__ import annotations

import copy

from happi.errors import EnforceError
from happi.item import EntryInfo, HappiItem


def _list_of_str(value):
    """happi enforcer: labels are a list of strings (happi stores what it is given)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EnforceError(f"labels must be a list of strings, got {value!r}")
    return value


def _non_empty_str(value):
    if not isinstance(value, str) or not value:
        raise EnforceError(f"expected a non-empty string, got {value!r}")
    return value


class BeamlineItem(HappiItem):
    """One device of a beamline: what to build (``device_class``, ``args``,
    ``kwargs``), where (``prefix``) and how it is found (``beamline``, ``labels``)."""

    beamline = EntryInfo("Beamline this device belongs to (load_beamline selects on it)",
                         optional=False, enforce=_non_empty_str)
    labels = EntryInfo("ophyd labels, e.g. motor, detectors (load selects on them)",
                       enforce=_list_of_str, default=[])
    prefix = EntryInfo("EPICS PV prefix, where the class takes one", enforce=str)

    args = copy.copy(HappiItem.args)
    args.default = ["{{prefix}}"]
    kwargs = copy.copy(HappiItem.kwargs)
    kwargs.default = {"name": "{{name}}", "labels": "{{labels}}"}
