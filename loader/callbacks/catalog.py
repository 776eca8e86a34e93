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

from ..catalogs import files_directory

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


class CatalogWriter:
    """The session's catalog callback: remembers whether (and why) writing failed,
    and checks before each run that its directory can take the run
    (:mod:`loader.storage_guard` asks it).

    ``target`` is called once, at the first check or document, and returns
    ``(callback, directory or None)``: finding where a catalog writes may open
    the catalog (importing databroker), which a session start should not wait for.
    """

    def __init__(self, target: Callable[[], tuple[Callable[[str, dict], Any], Path | None]],
                 min_free_mb: float | None = None) -> None:
        from ..storage_guard import DEFAULT_MIN_FREE_MB
        self._target = target
        self._callback: Callable[[str, dict], Any] | None = None
        self.directory: Path | None = None
        self.min_free_bytes = float(DEFAULT_MIN_FREE_MB if min_free_mb is None else min_free_mb) * 1e6
        self.failures = 0
        self.error: str | None = None

    @property
    def callback(self) -> Callable[[str, dict], Any]:
        if self._callback is None:
            self._callback, self.directory = self._target()
        return self._callback

    @property
    def staging(self) -> Path | None:
        self.callback  # noqa: B018 -- resolves the directory
        return self.directory / STAGING if self.directory is not None else None

    def __call__(self, name: str, doc: dict) -> None:
        try:
            self.callback(name, doc)
        except Exception as exc:
            self.failures += 1
            self.error = f"{type(exc).__name__}: {exc}"
            raise

    def check(self) -> None:
        """Raise ``StorageError`` unless a run can be written now (file-backed catalogs)."""
        from ..storage_guard import check_directory
        staging = self.staging
        if staging is not None:
            check_directory(staging, self.min_free_bytes)

    def __repr__(self) -> str:
        return f"<CatalogWriter {self.directory or self._callback or 'not yet resolved'}>"


def catalog_writer(beamline, min_free_mb: float | None = None, **options: Any) -> CatalogWriter:
    """Entry point ``loader.callbacks: catalog``: write runs into ``beamline.cat``.

    ``min_free_mb``: a run does not start unless the catalog's file system has that
    much free (file-backed catalogs; see :mod:`loader.storage_guard`)."""
    def target():
        cat = beamline.cat
        directory = files_directory(cat)     # a DeferredCatalog is not opened for it
        if directory is not None:  # file-backed (msgpack) catalog: write where it reads
            logger.info("catalog %r: runs written to %s", getattr(cat, "name", "?"), directory)
            return staged_msgpack_writer(directory, flush=options.get("flush", True)), directory
        return cat.v1.insert, None

    return CatalogWriter(target, min_free_mb)
