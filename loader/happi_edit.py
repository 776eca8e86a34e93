"""Edit ``happi_db.json`` safely when several processes do it at once.

happi's ``JSONBackend`` already replaces the file atomically (temporary file, then
rename), so a reader never sees half a file.  But each ``save``/``delete`` is a
read-modify-write with no lock: two processes adding entries at the same time both
read the old file and the last rename wins, silently dropping the other's entry.

``LockedJSONBackend`` holds an exclusive lock (``flock`` on a hidden ``.<db>.lock``
file beside the database) around every read-modify-write and re-reads the file
under it, so concurrent edits all land, and adding a name another process has just
added fails with happi's ``DuplicateError`` (a clear conflict) instead of
overwriting.  The new file is flushed to disk before the rename.

Use it for every write from a script or tool::

    from loader.happi_edit import open_client
    client = open_client("happi_db.json")          # or the happi.cfg naming it
    client.add_item(client.create_item("beamline.containers.BeamlineItem", name="m17", ...))

(``happi add``/``happi edit`` on the command line use happi's own backend, which is
fine for one person editing at a time.)
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

import happi
import simplejson
from happi.backends.json_db import JSONBackend

from .happi_db import json_path_from

LOCK_TIMEOUT = 30.0


class DatabaseLockTimeout(TimeoutError):
    """Another process held the database lock for longer than the time limit."""


def lock_path(db_path: str | os.PathLike) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(f".{db_path.name}.lock")


@contextlib.contextmanager
def exclusive_lock(db_path: str | os.PathLike, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the database's lock (bounded wait); released on exit, even on error."""
    path = lock_path(db_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseLockTimeout(f"{db_path}: another process has held {path} "
                                              f"for more than {timeout:g} s") from None
                time.sleep(0.005)       # retry interval of a bounded lock wait
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class LockedJSONBackend(JSONBackend):
    """happi's JSON backend with each write serialised across processes."""

    def __init__(self, path: str, initialize: bool = False, cfg_path: str | None = None,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.lock_timeout = lock_timeout
        super().__init__(path, initialize=initialize, cfg_path=cfg_path)

    def _locked(self):
        return exclusive_lock(self.path, self.lock_timeout)

    def initialize(self) -> None:
        with self._locked():
            super().initialize()

    def save(self, _id: str, post: dict, insert: bool = True) -> None:
        with self._locked():
            self.clear_cache()              # what other processes wrote, read under the lock
            super().save(_id, post, insert=insert)

    def delete(self, _id: str) -> None:
        with self._locked():
            self.clear_cache()
            super().delete(_id)

    def store(self, db: dict) -> None:
        """Write a temporary file in the same directory, flush it to disk, rename it over."""
        temp_path = self._temp_path()
        try:
            with open(temp_path, "w") as fd:
                simplejson.dump(db, fd, sort_keys=True, indent=4)
                fd.flush()
                os.fsync(fd.fileno())
            if os.path.exists(self.path):
                os.chmod(temp_path, os.stat(self.path).st_mode & 0o7777)
            os.replace(temp_path, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temp_path)
            raise


def open_client(database: str | os.PathLike, lock_timeout: float = LOCK_TIMEOUT) -> happi.Client:
    """A happi client whose writes are safe against other processes writing too.

    ``database`` is the JSON file or a happi ``.cfg`` naming it.
    """
    path = json_path_from(database, Path.cwd())
    return happi.Client(database=LockedJSONBackend(str(path), lock_timeout=lock_timeout))
