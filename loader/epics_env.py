"""Channel Access settings from the YAML's ``epics`` section.

They are defaults: a variable already in the environment wins (that is how the
same configuration reaches real IOCs, or the tests' IOCs on free ports).  They
must be in place before the first CA call of the process; later changes are
ignored by libca, so that case is only logged.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, MutableMapping

logger = logging.getLogger(__name__)


def epics_defaults(epics: Mapping[str, Any] | None) -> dict[str, str]:
    """The ``EPICS_CA_*`` variables the ``epics`` section asks for."""
    epics = epics or {}
    env: dict[str, str] = {}
    if epics.get("addr_list"):
        env["EPICS_CA_ADDR_LIST"] = " ".join(str(a) for a in epics["addr_list"])
    if "auto_addr_list" in epics:
        env["EPICS_CA_AUTO_ADDR_LIST"] = "YES" if epics["auto_addr_list"] else "NO"
    if epics.get("max_array_bytes"):
        env["EPICS_CA_MAX_ARRAY_BYTES"] = str(int(epics["max_array_bytes"]))
    return env


def ca_started() -> bool:
    """True once pyepics has created its CA context (settings are then fixed)."""
    ca = sys.modules.get("epics.ca")
    return bool(ca is not None and getattr(ca, "libca", None) is not None)


def apply_epics_defaults(epics: Mapping[str, Any] | None,
                         environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each variable the environment does not already have; returns what was set."""
    target = os.environ if environ is None else environ
    applied = {k: v for k, v in epics_defaults(epics).items() if k not in target}
    if applied and environ is None and ca_started():
        logger.warning("Channel Access already started in this process; ignoring %s", applied)
        return {}
    target.update(applied)
    return applied
