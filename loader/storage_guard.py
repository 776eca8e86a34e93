"""Never start a run the catalog cannot store; fail a run whose catalog writer broke.

A RunEngine preprocessor watching the plan's messages:

* before ``open_run``: the catalog writer's directory must take a new file and
  keep ``min_free_mb`` free (``callbacks: [{name: catalog, options: {min_free_mb: N}}]``
  in the YAML; default :data:`DEFAULT_MIN_FREE_MB`).  Otherwise the plan ends
  with :class:`StorageError` before the run opens: no start document, nothing
  written anywhere.
* during a run: when the catalog writer has failed (disk full, directory gone),
  :class:`StorageError` is thrown into the plan at its next message, so the run
  is closed with exit status ``fail`` at once instead of taking data that is not
  recorded.  The partial run stays in the writer's staging directory, out of the
  catalog, so later reads of the catalog are not affected.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_MIN_FREE_MB = 50.0


class StorageError(RuntimeError):
    """The run's data cannot be stored: nothing was started, or the run was failed."""


def free_bytes(directory: str | os.PathLike) -> int:
    """Bytes available to this (unprivileged) user on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def check_directory(directory: str | os.PathLike, min_free_bytes: float = 0) -> None:
    """Raise :class:`StorageError` unless a file can be created in ``directory``
    (made if missing) and its file system has ``min_free_bytes`` available."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise StorageError(f"cannot write runs to {directory}: it is not a directory; nothing was started")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StorageError(f"cannot write runs to {directory}: {exc.strerror or exc}"
                           f"{f' ({exc.filename})' if exc.filename else ''}; "
                           "nothing was started") from exc
    free = free_bytes(directory)
    if free < min_free_bytes:
        raise StorageError(
            f"only {free / 1e6:.1f} MB free for {directory}, less than the {min_free_bytes / 1e6:g} MB "
            "the session keeps free (YAML: callbacks: catalog: options: min_free_mb); "
            "nothing was started")


class StorageGuard:
    """RunEngine preprocessor for one catalog writer (see the module docstring)."""

    def __init__(self, writer) -> None:
        self.writer = writer
        self._failures_at_open = 0
        self._thrown = False

    def __call__(self, plan):
        from bluesky.utils import ensure_generator
        return self._forward(ensure_generator(plan))

    def _problem(self, msg) -> StorageError | None:
        if msg.command == "open_run":
            self._thrown = False
            try:
                self.writer.check()
            except StorageError as exc:
                logger.error("run not started: %s", exc)
                return exc
            self._failures_at_open = self.writer.failures
            return None
        if not self._thrown and self.writer.failures > self._failures_at_open:
            self._thrown = True
            exc = StorageError(f"the catalog writer failed during this run ({self.writer.error}); "
                               f"the run was stopped and is not in the catalog "
                               f"(partial documents in {self.writer.staging})")
            logger.error("%s", exc)
            return exc
        return None

    def _forward(self, plan):
        response, throw = None, None
        while True:
            try:
                msg = plan.throw(throw) if throw is not None else plan.send(response)
            except StopIteration as stop:
                return stop.value
            response, throw = None, self._problem(msg)
            if throw is not None:
                continue                      # thrown into the plan instead of running msg
            try:
                response = yield msg
            except GeneratorExit:
                plan.close()
                raise
            except BaseException as exc:      # the RunEngine's own errors go to the plan
                throw = exc


def install(RE, writer) -> StorageGuard | None:
    """Add the guard for ``writer`` (the session's catalog writer) to ``RE.preprocessors``."""
    if writer is None or not hasattr(writer, "check"):
        return None
    guard = StorageGuard(writer)
    RE.preprocessors.append(guard)
    return guard
