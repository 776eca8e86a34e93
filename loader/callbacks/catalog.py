"""The catalog writer: every document of every run goes into ``beamline.cat``.

For the file-backed catalog each run is written with suitcase-msgpack into a
staging directory (``<runs>/.incomplete/``) and moved into the catalog's
directory when its stop document has been written, so the catalog never lists a
half-written run.  Any other databroker catalog (MongoDB) is written with its
own ``v1.insert``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import event_model

logger = logging.getLogger(__name__)

STAGING = ".incomplete"


class _StagedRun:
    """One run: msgpack into the staging directory, moved into place at stop."""

    def __init__(self, directory: Path, flush: bool = True) -> None:
        from suitcase.msgpack import Serializer
        self.directory = directory
        self.staging = directory / STAGING
        self.staging.mkdir(parents=True, exist_ok=True)
        self.serializer = Serializer(self.staging, flush=flush)

    def __call__(self, name: str, doc: dict) -> None:
        self.serializer(name, doc)
        if name == "stop":
            self._publish()

    def _publish(self) -> None:
        for staged in self.serializer.artifacts.get("all", []):
            staged = Path(staged)
            final = self.directory / staged.name
            os.replace(staged, final)
            logger.debug("run written to %s", final)


def staged_msgpack_writer(directory: str | os.PathLike, flush: bool = True) -> event_model.RunRouter:
    """A callback writing each run to ``directory/<uid>.msgpack`` (atomically per run)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def factory(name: str, start_doc: dict):
        return [_StagedRun(directory, flush=flush)], []

    return event_model.RunRouter([factory])


def catalog_writer(beamline, **options: Any) -> Callable[[str, dict], Any]:
    """Entry point ``loader.callbacks: catalog``: write runs into ``beamline.cat``."""
    cat = beamline.cat
    paths = getattr(cat, "paths", None)
    if paths:  # file-backed (msgpack) catalog: write where it reads
        directory = Path(os.path.dirname(paths[0]))
        logger.info("catalog %r: runs written to %s", getattr(cat, "name", "?"), directory)
        return staged_msgpack_writer(directory, flush=options.get("flush", True))
    return cat.v1.insert
