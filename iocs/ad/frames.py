"""What the driver hands to its plugins: one frame and its identity (an NDArray)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .simulation import NUMPY_TYPES

EPICS_EPOCH = 631152000.0   # 1990-01-01 in POSIX seconds


@dataclass(frozen=True)
class Frame:
    """A read-only 2-D image (rows = Y, columns = X) with its unique id and time."""

    data: np.ndarray
    unique_id: int
    timestamp: float          # POSIX seconds

    @property
    def size_x(self) -> int:
        return int(self.data.shape[1])

    @property
    def size_y(self) -> int:
        return int(self.data.shape[0])

    @property
    def data_type(self) -> str:
        """The areaDetector name of the element type (``UInt8``, ...)."""
        for name, dtype in NUMPY_TYPES.items():
            if self.data.dtype == dtype:
                return name
        return "UInt8"


async def post_count_and_identity(params, frame: Frame) -> None:
    """Count ``frame`` on a port's ``params`` (``ArrayCounter``) and post its unique id
    and time stamps, stamped with the frame's time: what the driver and every plugin
    post for each frame they handle."""
    ts = frame.timestamp
    await params.set("ArrayCounter", params.get("ArrayCounter") + 1, timestamp=ts)
    await params.set("UniqueId_RBV", frame.unique_id, timestamp=ts)
    await params.set("TimeStamp_RBV", ts - EPICS_EPOCH, timestamp=ts)
    await params.set("EpicsTSSec_RBV", int(ts - EPICS_EPOCH), timestamp=ts)
    await params.set("EpicsTSNsec_RBV", int((ts % 1) * 1e9), timestamp=ts)


class FrameSink(Protocol):
    """A plugin that receives the driver's frames."""

    def accepts(self, port: str) -> bool:
        """True when the plugin is enabled and its NDArrayPort is ``port``."""

    async def receive(self, frame: Frame) -> None:
        """Take one frame; must return quickly unless BlockingCallbacks says otherwise."""

    async def idle(self) -> None:
        """Return once every frame received so far is fully processed."""
