"""The session's RunEngine: metadata from the YAML, plus who/where/which versions.

Metadata lives in a :class:`~loader.persistent_md.PersistentMetadata` in
``paths.metadata`` so ``scan_id`` continues from one session to the next.
"""
from __future__ import annotations

import getpass
import logging
import os
import socket
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from bluesky import RunEngine

from . import watchdog
from .persistent_md import PersistentMetadata

logger = logging.getLogger(__name__)

# distributions whose versions a scientist wants recorded with every run
VERSIONED = ("apstools", "bluesky", "caproto", "databroker", "event-model", "h5py", "happi",
             "intake", "matplotlib", "numpy", "ophyd", "pyepics", "spec2nexus",
             "beamline-framework")


def package_versions(names: tuple[str, ...] = VERSIONED) -> dict[str, str]:
    """Installed versions (from distribution metadata: nothing is imported)."""
    found = {}
    for name in names:
        try:
            found[name.replace("-", "_")] = version(name)
        except PackageNotFoundError:
            continue
    return found


def session_metadata(config_md: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What every run of this session carries: the YAML's ``metadata`` plus
    ``login_id``, ``pid`` and ``versions`` (the YAML cannot override these three)."""
    md = dict(config_md or {})
    md["login_id"] = f"{getpass.getuser()}@{socket.gethostname()}"
    md["pid"] = os.getpid()
    md["versions"] = package_versions()
    return md


def persistent_scan_id(md) -> int:
    """Next scan_id, counted from the value on disk when ``md`` persists (bluesky's
    ``scan_id_source`` hook): two sessions on one data directory never reuse a number."""
    if isinstance(md, PersistentMetadata):
        md.reload_key("scan_id")
    return int(md.get("scan_id") or 0) + 1


def make_run_engine(config_md: Mapping[str, Any] | None = None,
                    metadata_dir: str | os.PathLike | None = None,
                    **kwargs) -> RunEngine:
    """A RunEngine whose ``md`` persists in ``metadata_dir`` (in memory when ``None``)."""
    store: Any = PersistentMetadata(Path(metadata_dir)) if metadata_dir else {}
    kwargs.setdefault("scan_id_source", persistent_scan_id)
    RE = RunEngine(store, **kwargs)
    watchdog.install(RE)   # a status whose IOC dies fails instead of hanging the RunEngine
    md = session_metadata(config_md)
    versions = dict(RE.md.get("versions", {}))
    versions.update(md.pop("versions"))
    md["versions"] = versions
    if isinstance(store, PersistentMetadata):
        store.update(md)  # one atomic write
        logger.info("RunEngine metadata in %s (scan_id=%s)", store.path, store.get("scan_id"))
    else:
        RE.md.update(md)
    return RE
