"""What every simulated plugin does with an incoming frame (NDPluginDriver).

Checks EnableCallbacks and NDArrayPort, hands the frame to the plugin's own
:meth:`PluginPort.process`, then publishes its shape (ArraySize0/1/2_RBV,
NDimensions, DataType, ColorMode) and last counts it (ArrayCounter, UniqueId,
TimeStamp).  That order is areaDetector's (the parameters are posted once the
plugin is done, the counter after the shape): a client that reads ``ArrayData``
or the shape when ``ArrayCounter_RBV`` moves gets that frame's, not the one before.
"""
from __future__ import annotations

import time

from .frames import Frame, post_count_and_identity
from .params import Param, ParamGroup


class PluginPort:
    """Base of ``image1:`` and ``HDF1:``; subclasses implement :meth:`process`."""

    def __init__(self, prefix: str, params: list[Param]):
        self.params = ParamGroup(prefix, params)
        self.pvdb = self.params.pvdb
        self._last_time: float | None = None

    def accepts(self, port: str) -> bool:
        p = self.params
        return p.get("EnableCallbacks") == "Enable" and p.get("NDArrayPort") == port

    async def receive(self, frame: Frame) -> None:
        started = time.perf_counter()
        await self.process(frame)
        await self._describe(frame)
        await self.params.set("ExecutionTime_RBV", round((time.perf_counter() - started) * 1e3, 3))

    async def _describe(self, frame: Frame) -> None:
        p, ts = self.params, frame.timestamp
        await p.set("ArraySize0", frame.size_x)
        await p.set("ArraySize1", frame.size_y)
        await p.set("ArraySize2", 0)
        await p.set("ArraySizeX_RBV", frame.size_x)
        await p.set("ArraySizeY_RBV", frame.size_y)
        await p.set("ArraySize_RBV", frame.data.nbytes)
        await p.set("NDimensions", 2)
        await p.set("Dimensions", [frame.size_x, frame.size_y] + [0] * 8)
        await p.set("DataType", frame.data_type)
        await p.set("ColorMode", "Mono")
        await post_count_and_identity(p, frame)        # the count last, as areaDetector posts it
        if self._last_time is not None and ts > self._last_time:
            await p.set("ArrayRate_RBV", round(1.0 / (ts - self._last_time), 2))
        self._last_time = ts

    async def process(self, frame: Frame) -> None:
        """The plugin's own work on one frame."""
        raise NotImplementedError

    async def idle(self) -> None:
        """Nothing queued by default."""
