"""``HDF1:`` — NDFileHDF5: frames into HDF5 files, off the event loop.

* Single: with AutoSave, every frame becomes its own file; WriteFile writes the last.
* Capture: frames are buffered until NumCapture, then written (AutoSave) as one file.
* Stream: the file opens at Capture=1 (or with the first frame when LazyOpen),
  frames are appended as they arrive, and it closes after NumCapture frames or
  at Capture=0 (NumCapture=0 means "until stopped").

Capture is a busy record: a put of 1 completes when capturing ends, and
Capture_RBV drops to 0 only once the file is closed.  All disk work runs in one
worker thread, in order; the CA server never waits on the disk.  A path that
does not exist and cannot be created (CreateDirectory), or a full or read-only
disk, sets FilePathExists_RBV / WriteStatus / WriteMessage and stops the capture;
the IOC keeps running.
"""
from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from caproto import SkipWrite

from .frames import Frame
from .hdf5_file import HDF5FrameFile, write_frames
from .hdf5_params import hdf5_plugin_params
from .plugin_base import PluginPort

logger = logging.getLogger(__name__)


class FileWriteError(RuntimeError):
    """A file could not be opened or written (reported on WriteMessage)."""


def format_file_name(template: str, path: str, name: str, number: int) -> str:
    """areaDetector's C-style ``FileTemplate`` (``%s%s_%3.3d.h5``) applied in Python."""
    try:
        return template % (path, name, number)
    except (TypeError, ValueError):
        try:
            return template % (path, name)
        except (TypeError, ValueError):
            return f"{path}{name}_{number:03d}.h5"


def ensure_directory(path: str, create_depth: int) -> bool:
    """True when ``path`` exists, creating missing levels as CreateDirectory allows.

    ``create_depth`` < 0: up to ``-create_depth`` trailing levels may be created;
    > 0: the first ``create_depth`` levels must exist, the rest may be created;
    0: nothing is created.
    """
    target = Path(path)
    if target.is_dir():
        return True
    if create_depth == 0:
        return False
    parts = target.parts
    missing = 0
    probe = target
    while not probe.is_dir() and probe != probe.parent:
        missing += 1
        probe = probe.parent
    allowed = -create_depth if create_depth < 0 else max(0, len(parts) - create_depth)
    if missing > allowed:
        return False
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return target.is_dir()


class HDF5Plugin(PluginPort):
    """The HDF5 file writer plugin."""

    def __init__(self, prefix: str, source_port: str, data_dir: str, port: str = "FileHDF1"):
        data_dir = str(data_dir).rstrip("/") + "/"
        super().__init__(prefix, hdf5_plugin_params(port, source_port, data_dir))
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="ad-hdf5")
        self._file: HDF5FrameFile | None = None
        self._capturing = False
        self._capture_ended = asyncio.Event()
        self._buffer: list[Frame] = []
        self._last_frame: Frame | None = None
        self._pending: set[asyncio.Future] = set()
        self._closing: asyncio.Future | None = None
        p = self.params
        p.on_put("FilePath", self._put_file_path)
        p.on_put("Capture", self._put_capture)
        p.on_put("WriteFile", self._put_write_file)
        p.on_put("NumCapture", self._at_least_zero)

    async def startup(self, async_lib=None) -> None:
        await self._check_path(self.params.get("FilePath"))

    # -- helpers -------------------------------------------------------------
    async def _disk_call(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(self._disk, func, *args)

    @staticmethod
    async def _at_least_zero(value):
        return max(0, int(value))

    async def _check_path(self, path: str) -> bool:
        exists = await self._disk_call(os.path.isdir, path)
        await self.params.set("FilePathExists_RBV", "Yes" if exists else "No")
        return exists

    async def _put_file_path(self, value):
        path = str(value)
        if path and not path.endswith("/"):
            path += "/"
        await self.params.set("FilePath", path)
        await self._check_path(path)
        return path

    async def _report(self, message: str, error: bool) -> None:
        await self.params.set("WriteMessage", message[:255])
        await self.params.set("WriteStatus", "Write error" if error else "Write OK")
        if error:
            logger.warning("%s%s", self.params.prefix, message)

    async def _next_file_name(self) -> str:
        """Check/create the directory, build the full name, advance FileNumber."""
        p = self.params
        path = p.get("FilePath")
        ok = await self._disk_call(ensure_directory, path, p.get("CreateDirectory"))
        await p.set("FilePathExists_RBV", "Yes" if ok else "No")
        if not ok:
            raise FileWriteError(f"Invalid file path {path!r}: does not exist and was not created")
        number = p.get("FileNumber")
        full = format_file_name(p.get("FileTemplate"), path, p.get("FileName"), number)
        await p.set("FullFileName_RBV", full[:255])
        if p.get("AutoIncrement") == "Yes":
            await p.set("FileNumber", number + 1)
        return full

    def _file_options(self) -> tuple[str, str, int]:
        p = self.params
        return p.get("TempSuffix"), p.get("Compression"), p.get("ZLevel")

    async def _write_whole_file(self, frames: list[Frame]) -> bool:
        """One complete file from ``frames`` (Single and Capture modes)."""
        try:
            full = await self._next_file_name()
            await self._disk_call(write_frames, full, frames, *self._file_options())
        except Exception as exc:
            await self._report(f"Error writing file: {exc}", error=True)
            return False
        await self._report(f"Wrote {full}", error=False)
        return True

    # -- capture control -------------------------------------------------------
    async def _put_capture(self, value):
        start = value in (1, "Capture")
        if not start:
            if self._capturing:
                await self._end_capture(write_buffer=self.params.get("AutoSave") == "Yes")
            if self._closing is not None and not self._closing.done():
                await asyncio.wait({self._closing})    # Done only once the file is closed
            return None
        if self._capturing:          # already capturing: complete with it
            await self._capture_ended.wait()
            return SkipWrite
        if self._closing is not None and not self._closing.done():
            await asyncio.wait({self._closing})    # the previous file is still closing
        p = self.params
        mode = p.get("FileWriteMode")
        if mode == "Single":
            await self._report("Capture is not used in Single mode", error=True)
            raise FileWriteError("Capture is not used in Single file write mode")
        self._buffer = []
        await p.set("NumCaptured_RBV", 0)
        await self._report("", error=False)
        if mode == "Stream" and p.get("LazyOpen") == "No":
            if not await self._open_stream():
                raise FileWriteError(p.get("WriteMessage"))
        self._capturing = True
        self._capture_ended = asyncio.Event()
        await p.set("Capture", "Capture", setpoint=True)
        await self._capture_ended.wait()
        return SkipWrite

    async def _open_stream(self) -> bool:
        try:
            full = await self._next_file_name()
            self._file = await self._disk_call(HDF5FrameFile, full, *self._file_options())
        except Exception as exc:
            self._file = None
            await self._report(f"Error opening file: {exc}", error=True)
            return False
        return True

    async def _end_capture(self, write_buffer: bool, error: str | None = None) -> None:
        """Stop capturing: close (or write) the file, then drop Capture to Done."""
        if not self._capturing:
            return
        self._capturing = False
        p = self.params
        others = {f for f in self._pending if f is not asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=60.0)
        if error is not None:
            await self._report(error, error=True)
            if self._file is not None:
                await self._disk_call(self._file.abort)
        elif self._file is not None:
            try:
                path = await self._disk_call(self._file.close)
                await self._report(f"Wrote {path}", error=False)
            except Exception as exc:
                await self._disk_call(self._file.abort)
                await self._report(f"Error closing file: {exc}", error=True)
        elif write_buffer and self._buffer:
            await self._write_whole_file(self._buffer)
        self._file = None
        self._buffer = []
        await p.set("Capture", "Done", setpoint=True)
        self._capture_ended.set()

    async def _put_write_file(self, value):
        if value not in (1, "Write"):
            return None
        p = self.params
        await p.set("WriteFile", "Write")
        mode = p.get("FileWriteMode")
        if mode == "Single" and self._last_frame is not None:
            await self._write_whole_file([self._last_frame])
        elif mode == "Capture" and self._buffer:
            await self._write_whole_file(list(self._buffer))
        await p.set("WriteFile", "Done", setpoint=True)
        return "Done"

    # -- frames ----------------------------------------------------------------
    async def process(self, frame: Frame) -> None:
        p = self.params
        self._last_frame = frame
        mode = p.get("FileWriteMode")
        if not self._capturing:
            if mode == "Single" and p.get("AutoSave") == "Yes":
                await self._write_whole_file([frame])
            return
        limit = p.get("NumCapture")
        if mode == "Capture":
            self._buffer.append(frame)
            await p.set("NumCaptured_RBV", len(self._buffer))
            if limit and len(self._buffer) >= limit:
                await self._finish_in_background(write_buffer=p.get("AutoSave") == "Yes")
            return
        # Stream
        if self._file is None and not await self._open_stream():
            await self._end_capture(write_buffer=False, error=p.get("WriteMessage"))
            return
        if len(self._pending) >= p.get("QueueSize"):
            await p.set("DroppedArrays", p.get("DroppedArrays") + 1)
            return
        future = asyncio.ensure_future(
            self._disk_call(self._file.append, frame.data, frame.unique_id, frame.timestamp))
        self._pending.add(future)
        future.add_done_callback(self._written)
        captured = p.get("NumCaptured_RBV") + 1
        await p.set("NumCaptured_RBV", captured)
        if p.get("BlockingCallbacks") == "Yes":
            await asyncio.wait({future})
        if limit and captured >= limit:
            await self._finish_in_background(write_buffer=False)

    async def _finish_in_background(self, write_buffer: bool) -> None:
        if self.params.get("BlockingCallbacks") == "Yes":
            await self._end_capture(write_buffer)
        else:
            self._closing = asyncio.ensure_future(self._end_capture(write_buffer))
            self._pending.add(self._closing)
            self._closing.add_done_callback(self._pending.discard)

    def _written(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None and self._capturing:
            message = f"Error writing file: {exc}"
            self._closing = asyncio.ensure_future(
                self._end_capture(write_buffer=False, error=message))

    async def idle(self) -> None:
        while self._pending:
            await asyncio.wait(set(self._pending))
