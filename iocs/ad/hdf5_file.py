"""One HDF5 file written frame by frame, in the areaDetector layout.

``/entry/data/data`` holds the frames, shaped N x Y x X (what the ``AD_HDF5``
handler of area-detector-handlers reads); ``/entry/instrument/NDAttributes``
holds each frame's unique id and time stamp.  The file is written under a
temporary name in the same directory and renamed when closed, so a reader never
opens a half-written file under the final name.  Every method blocks: call them
from a worker thread, never from the event loop.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

DEFAULT_TEMP_SUFFIX = ".partial"


class HDF5FrameFile:
    """An open file; :meth:`append` frames, then :meth:`close` (or :meth:`abort`)."""

    def __init__(self, path: str | os.PathLike, temp_suffix: str = "",
                 compression: str = "None", zlevel: int = 6):
        self.path = Path(path)
        suffix = temp_suffix or DEFAULT_TEMP_SUFFIX
        self.temp_path = self.path.with_name(self.path.name + suffix)
        self._compression = {"compression": "gzip", "compression_opts": int(zlevel)} \
            if compression == "zlib" else {}
        self._file = h5py.File(self.temp_path, "w", libver="earliest")
        entry = self._file.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "data"
        attrs = entry.create_group("instrument").create_group("NDAttributes")
        attrs.attrs["NX_class"] = "NXcollection"
        self._data_group = data
        self._ids = attrs.create_dataset("NDArrayUniqueId", shape=(0,), maxshape=(None,),
                                         dtype="i4", chunks=(1024,))
        self._stamps = attrs.create_dataset("NDArrayTimeStamp", shape=(0,), maxshape=(None,),
                                            dtype="f8", chunks=(1024,))
        self._dataset = None
        self.count = 0

    def append(self, frame: np.ndarray, unique_id: int = 0, timestamp: float = 0.0) -> int:
        """Add one 2-D frame; returns the number of frames in the file."""
        if self._dataset is None:
            rows, cols = frame.shape
            self._dataset = self._data_group.create_dataset(
                "data", shape=(0, rows, cols), maxshape=(None, rows, cols),
                chunks=(1, rows, cols), dtype=frame.dtype, **self._compression)
            self._dataset.attrs["signal"] = 1
        n = self.count
        self._dataset.resize(n + 1, axis=0)
        self._dataset[n] = frame
        self._ids.resize(n + 1, axis=0)
        self._ids[n] = unique_id
        self._stamps.resize(n + 1, axis=0)
        self._stamps[n] = timestamp
        self.count = n + 1
        return self.count

    def close(self) -> Path:
        """Finish the file and give it its final name."""
        self._file.close()
        os.replace(self.temp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after a write error)."""
        try:
            self._file.close()
        except Exception:   # the file may already be unusable (disk full)
            pass
        try:
            self.temp_path.unlink()
        except OSError:
            pass


def write_frames(path: str | os.PathLike, frames: list, temp_suffix: str = "",
                 compression: str = "None", zlevel: int = 6) -> Path:
    """Write a whole list of :class:`~iocs.ad.frames.Frame` to one file (Capture/Single modes)."""
    out = HDF5FrameFile(path, temp_suffix, compression, zlevel)
    try:
        for frame in frames:
            out.append(frame.data, frame.unique_id, frame.timestamp)
        return out.close()
    except BaseException:
        out.abort()
        raise
