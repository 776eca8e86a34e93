"""RunEngine metadata that survives the session (``scan_id`` keeps counting).

bluesky's own ``PersistentDict`` needs ``zict``, which this project does not
install; this is the same idea in one JSON file, rewritten atomically (temp file
+ rename) on every change so a crash never leaves it half-written.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Iterator


class PersistentMetadata(MutableMapping):
    """A dict kept in ``<directory>/metadata.json``; every assignment is saved."""

    FILENAME = "metadata.json"

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.FILENAME
        self._data: dict[str, Any] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again (another session may have counted scans since)."""
        if self.path.exists():
            text = self.path.read_text()
            try:
                data = json.loads(text) if text.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"{self.path}: not valid JSON ({exc})") from exc
            if not isinstance(data, dict):
                raise ValueError(f"{self.path}: expected a JSON object, got {type(data).__name__}")
            self._data = data
        else:
            self._data = {}

    def reload_key(self, key: str) -> None:
        """Take ``key`` from the file as it is now (another session on the same
        directory may have counted scans since this one started)."""
        if not self.path.exists():
            return
        try:
            on_disk = json.loads(self.path.read_text() or "{}")
        except json.JSONDecodeError:
            return          # keep what we have; the next flush rewrites a good file
        if isinstance(on_disk, dict) and key in on_disk:
            self._data[key] = on_disk[key]

    def flush(self) -> None:
        """Write everything now, atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self._data, indent=2, sort_keys=True, default=_jsonable)
        fd, tmp = tempfile.mkstemp(prefix=".metadata-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __setitem__(self, key: str, value: Any) -> None:
        json.dumps(value, default=_jsonable)  # refuse what cannot be saved, before storing it
        self._data[key] = value
        self.flush()

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.flush()

    def update(self, *args, **kwargs) -> None:  # one write for many keys
        new = dict(*args, **kwargs)
        json.dumps(new, default=_jsonable)
        self._data.update(new)
        self.flush()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<PersistentMetadata {self.path} {self._data!r}>"


def _jsonable(obj: Any) -> Any:
    """numpy scalars and arrays are common metadata values; store them as JSON numbers/lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"metadata value of type {type(obj).__name__} cannot be stored as JSON")
