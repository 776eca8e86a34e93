"""``image1:`` — NDPluginStdArrays: the last frame as a flat ``ArrayData`` waveform.

Clients need ``EPICS_CA_MAX_ARRAY_BYTES`` above the frame size (1 MiB for the
default 1024x1024 UInt8 frame) to read ArrayData.  Frames of other data types are
clipped to 0..255: the waveform's element type is fixed when the IOC starts, as
with a real IOC's ``FTVL``.
"""
from __future__ import annotations

import numpy as np

from .frames import Frame
from .ndarray_base import plugin_base
from .params import pv
from .plugin_base import PluginPort


def _blank(size: int) -> np.ndarray:
    blank = np.zeros(size, dtype=np.uint8)
    blank.flags.writeable = False
    return blank


class ImagePlugin(PluginPort):
    """Publishes each frame it receives on ``ArrayData``."""

    def __init__(self, prefix: str, source_port: str, max_elements: int,
                 port: str = "IMAGE1"):
        params = plugin_base(port, "NDPluginStdArrays", source_port) + [
            pv("ArrayData", "bytes", _blank(max_elements), max_length=max_elements),
        ]
        super().__init__(prefix, params)

    async def process(self, frame: Frame) -> None:
        data = frame.data
        if data.dtype != np.uint8:
            data = np.clip(data, 0, 255).astype(np.uint8)
        flat = data.reshape(-1)
        if flat.flags.writeable:
            flat.flags.writeable = False
        await self.params.set("ArrayData", flat, timestamp=frame.timestamp)
