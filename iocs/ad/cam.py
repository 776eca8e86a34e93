"""``cam1:`` — the ADSimDetector driver: parameters, acquisition and frame fan-out.

Acquire behaves as the busy record of a real driver: a put of 1 completes when
the acquisition ends (images done, or a put of 0 stops it); Acquire_RBV,
DetectorState_RBV and AcquireBusy move with it, and AcquireBusy waits for the
plugins when WaitForPlugins is Yes.  Frames are made off the event loop.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from caproto import SkipWrite

from .frames import Frame, FrameSink, post_count_and_identity
from .ndarray_base import ndarray_base
from .params import NO_YES, Param, ParamGroup, enum, pv, ro, rw
from .simulation import SIM_MODES, FrameSettings, FrameSimulator

DRIVER_VERSION = "2.10.0"
DETECTOR_STATES = ("Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error",
                   "Waiting", "Initializing", "Disconnected", "Aborted")
IMAGE_MODES = ("Single", "Multiple", "Continuous")
SIM_COLOR_MODES = ("Mono", "RGB1", "RGB2", "RGB3")


def cam_params(port: str, max_x: int, max_y: int) -> list[Param]:
    """ADBase plus the simDetector records."""
    base = [p for p in ndarray_base(port, DRIVER_VERSION) if p.name != "ColorMode"]
    return base + [
        enum("ColorMode", SIM_COLOR_MODES, 0),
        enum("Acquire", ("Done", "Acquire"), 0),
        enum("AcquireBusy", ("Done", "Acquiring"), 0, readonly=True),
        rw("AcquireTime", "float", 0.1, units="s"),
        rw("AcquirePeriod", "float", 0.0, units="s"),
        enum("ImageMode", IMAGE_MODES, 0),
        enum("TriggerMode", ("Internal", "External"), 0),
        rw("NumImages", "int", 1),
        ro("NumImagesCounter_RBV", "int", 0),
        rw("NumExposures", "int", 1),
        ro("NumExposuresCounter_RBV", "int", 0),
        ro("DetectorState_RBV", "enum", "Idle", enum=DETECTOR_STATES),
        ro("TimeRemaining_RBV", "float", 0.0),
        ro("StatusMessage_RBV", "char", "Idle"),
        ro("StringFromServer_RBV", "char", ""),
        ro("StringToServer_RBV", "char", ""),
        enum("ReadStatus", ("Done", "Read"), 0, pair=False),
        ro("MaxSizeX_RBV", "int", max_x),
        ro("MaxSizeY_RBV", "int", max_y),
        rw("SizeX", "int", max_x), rw("SizeY", "int", max_y),
        rw("MinX", "int", 0), rw("MinY", "int", 0),
        rw("BinX", "int", 1), rw("BinY", "int", 1),
        enum("ReverseX", NO_YES, 0), enum("ReverseY", NO_YES, 0),
        enum("FrameType", ("Normal", "Background", "FlatField"), 0),
        rw("Gain", "float", 100.0),      # a visible spot out of the box (peak height, counts)
        rw("Temperature", "float", 25.0),
        pv("TemperatureActual", "float", 25.0),
        enum("ShutterMode", ("None", "EPICS PV", "Detector output"), 0),
        enum("ShutterControl", ("Close", "Open"), 0),
        enum("ShutterControlEPICS", ("Close", "Open"), 0, pair=False),
        ro("ShutterStatus_RBV", "enum", "Closed", enum=("Closed", "Open")),
        ro("ShutterStatusEPICS_RBV", "enum", "Closed", enum=("Closed", "Open")),
        rw("ShutterOpenDelay", "float", 0.0), rw("ShutterCloseDelay", "float", 0.0),
        pv("ShutterOpenEPICS", "float", 1.0), pv("ShutterCloseEPICS", "float", 0.0),
        pv("ShutterFanout", "int", 0),
        enum("WaitForPlugins", NO_YES, 0, pair=False),
        # simDetector
        enum("SimMode", SIM_MODES, 1),
        rw("Reset", "int", 0),
        rw("Offset", "float", 0.0), rw("Noise", "float", 0.0),
        rw("GainX", "float", 1.0), rw("GainY", "float", 1.0),
        rw("GainRed", "float", 1.0), rw("GainGreen", "float", 1.0), rw("GainBlue", "float", 1.0),
        rw("PeakStartX", "int", max_x // 2), rw("PeakStartY", "int", max_y // 2),
        rw("PeakWidthX", "int", 20), rw("PeakWidthY", "int", 20),
        rw("PeakNumX", "int", 1), rw("PeakNumY", "int", 1),
        rw("PeakStepX", "int", 100), rw("PeakStepY", "int", 100),
        rw("PeakVariation", "float", 0.0),
    ]


class SimDetectorDriver:
    """The ``cam1:`` port: owns the parameters, the simulator and the plugin list."""

    def __init__(self, prefix: str, port: str = "ADSIM", max_x: int = 1024, max_y: int = 1024):
        self.port = port
        self.params = ParamGroup(prefix, cam_params(port, max_x, max_y))
        self.pvdb = self.params.pvdb
        self.sim = FrameSimulator(max_x, max_y)
        self.sinks: list[FrameSink] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ad-frames")
        self._task: asyncio.Task | None = None
        self._taking_images = False
        self._stop = asyncio.Event()
        self._last_frame_time: float | None = None
        self._unique_id = 0
        self._install_hooks()

    # -- configuration -------------------------------------------------------
    def _install_hooks(self) -> None:
        p = self.params
        p.on_put("Acquire", self._put_acquire)
        p.on_put("Reset", self._put_reset)
        for name in ("SizeX", "SizeY", "MinX", "MinY", "BinX", "BinY"):
            p.on_put(name, self._region_hook(name))
        p.on_put("DataType", self._put_data_type)
        for name in ("NumImages", "NumExposures", "PeakNumX", "PeakNumY", "PeakWidthX",
                     "PeakWidthY"):
            p.on_put(name, self._at_least(1))
        for name in ("AcquireTime", "AcquirePeriod", "Noise", "PeakVariation"):
            p.on_put(name, self._at_least(0.0))

    @staticmethod
    def _at_least(lowest):
        async def hook(value):
            return max(type(lowest)(value), lowest)
        return hook

    def _region_hook(self, name: str):
        async def hook(value):
            p = self.params
            max_x, max_y = p.get("MaxSizeX_RBV"), p.get("MaxSizeY_RBV")
            value = int(value)
            if name in ("BinX", "BinY"):
                value = max(1, value)
            elif name == "MinX":
                value = min(max(0, value), max_x - 1)
            elif name == "MinY":
                value = min(max(0, value), max_y - 1)
            elif name == "SizeX":
                value = min(max(1, value), max_x - p.get("MinX"))
            elif name == "SizeY":
                value = min(max(1, value), max_y - p.get("MinY"))
            await p.set(name, value)
            await self.update_array_sizes()
            return value
        return hook

    async def _put_data_type(self, value):
        await self.params.set("DataType", value)
        await self.update_array_sizes()
        return value

    async def _put_reset(self, value):
        self.sim.reset()
        return None

    def settings(self) -> FrameSettings:
        """A snapshot of everything that shapes the next frame."""
        g = self.params.get
        return FrameSettings(
            mode=g("SimMode"), data_type=g("DataType"),
            min_x=g("MinX"), min_y=g("MinY"), size_x=g("SizeX"), size_y=g("SizeY"),
            bin_x=g("BinX"), bin_y=g("BinY"),
            reverse_x=g("ReverseX") == "Yes", reverse_y=g("ReverseY") == "Yes",
            gain=g("Gain"), gain_x=g("GainX"), gain_y=g("GainY"),
            offset=g("Offset"), noise=g("Noise"),
            peak_start_x=g("PeakStartX"), peak_start_y=g("PeakStartY"),
            peak_width_x=g("PeakWidthX"), peak_width_y=g("PeakWidthY"),
            peak_num_x=g("PeakNumX"), peak_num_y=g("PeakNumY"),
            peak_step_x=g("PeakStepX"), peak_step_y=g("PeakStepY"),
            peak_variation=g("PeakVariation"))

    async def update_array_sizes(self) -> None:
        """ArraySizeX/Y/Z_RBV as the next frame will have them (ophyd reads these to describe)."""
        rows, cols = self.sim.settings_valid(self.settings()).output_shape()
        itemsize = {"Int8": 1, "UInt8": 1, "Int16": 2, "UInt16": 2, "Int32": 4, "UInt32": 4,
                    "Float32": 4}.get(self.params.get("DataType"), 8)
        p = self.params
        await p.set("ArraySizeX_RBV", cols)
        await p.set("ArraySizeY_RBV", rows)
        await p.set("ArraySizeZ_RBV", 0)
        await p.set("ArraySize_RBV", cols * rows * itemsize)
        await p.set("NDimensions", 2)
        await p.set("Dimensions", [cols, rows] + [0] * 8)

    async def startup(self, async_lib=None) -> None:
        """Run once the server's loop is up."""
        await self.update_array_sizes()

    # -- acquisition -----------------------------------------------------------
    @property
    def acquiring(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _put_acquire(self, value):
        start = value in (1, "Acquire")
        if not start:
            self._stop.set()
            if self.acquiring:
                await asyncio.wait({self._task}, timeout=5.0)
            return None
        if self.acquiring:
            if self._taking_images:         # joins the running acquisition
                await asyncio.wait({self._task})
                return SkipWrite
            await asyncio.wait({self._task})  # only finishing up: then start a new one
        self._stop = asyncio.Event()
        self._taking_images = True
        await self.params.set("Acquire", "Acquire", setpoint=True)
        self._task = asyncio.get_running_loop().create_task(self._acquire())
        # put-completion: the put of 1 returns when this acquisition has ended
        await asyncio.wait({self._task})
        return SkipWrite

    async def _interruptible_wait(self, seconds: float) -> bool:
        """Wait ``seconds`` unless Acquire=0 comes first; True when stopped."""
        if seconds <= 0:
            return self._stop.is_set()
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def _acquire(self) -> None:
        p = self.params
        loop = asyncio.get_running_loop()
        mode = p.get("ImageMode")
        total = 1 if mode == "Single" else (p.get("NumImages") if mode == "Multiple" else None)
        await p.set("AcquireBusy", "Acquiring")
        await p.set("NumImagesCounter_RBV", 0)
        await p.set("StatusMessage_RBV", "Acquiring data")
        await self.update_array_sizes()
        done = 0
        try:
            while (total is None or done < total) and not self._stop.is_set():
                started = time.monotonic()
                exposure = p.get("AcquireTime") * max(1, p.get("NumExposures"))
                await p.set("DetectorState_RBV", "Acquire")
                await p.set("TimeRemaining_RBV", exposure)
                if await self._interruptible_wait(exposure):
                    break
                await p.set("DetectorState_RBV", "Readout")
                settings = self.sim.settings_valid(self.settings())
                data = await loop.run_in_executor(self._executor, self.sim.frame, settings)
                done += 1
                await p.set("NumExposuresCounter_RBV", max(1, p.get("NumExposures")))
                await p.set("NumImagesCounter_RBV", done)
                await self._publish(data)
                if total is not None and done >= total:
                    break
                delay = p.get("AcquirePeriod") - (time.monotonic() - started)
                if delay > 0:
                    await p.set("DetectorState_RBV", "Waiting")
                    if await self._interruptible_wait(delay):
                        break
        except Exception as exc:   # never leave Acquire stuck at 1
            await p.set("StatusMessage_RBV", f"Acquisition error: {exc}"[:255])
            await p.set("DetectorState_RBV", "Error")
        else:
            await p.set("DetectorState_RBV", "Idle")
            await p.set("StatusMessage_RBV", "Waiting for acquire command")
        finally:
            self._taking_images = False
            await p.set("TimeRemaining_RBV", 0.0)
            await p.set("Acquire", "Done", setpoint=True)
            if p.get("WaitForPlugins") == "Yes":
                await self.plugins_idle(timeout=30.0)
            await p.set("AcquireBusy", "Done")

    async def _publish(self, data) -> None:
        """Hand the frame to the enabled plugins, then count and describe it: as
        areaDetector posts a driver's parameters after its array callbacks, so a
        client that sees ``ArrayCounter_RBV`` move finds the frame in the plugins."""
        p = self.params
        now = time.time()
        self._unique_id += 1
        frame = Frame(data, self._unique_id, now)
        if p.get("ArrayCallbacks") == "Enable":
            for sink in self.sinks:
                if sink.accepts(self.port):
                    await sink.receive(frame)
        await post_count_and_identity(p, frame)
        if self._last_frame_time is not None and now > self._last_frame_time:
            await p.set("ArrayRate_RBV", round(1.0 / (now - self._last_frame_time), 2))
        self._last_frame_time = now

    async def plugins_idle(self, timeout: float) -> None:
        """Wait (bounded) until every plugin has processed what it was given."""
        if self.sinks:
            await asyncio.wait([asyncio.ensure_future(s.idle()) for s in self.sinks],
                               timeout=timeout)
