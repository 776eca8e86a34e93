"""Simulated detector frames (ADSimDetector's modes), vectorised with numpy.

Cheap per frame: the noise-free image is cached until a setting changes (or
recomputed from two small profiles when PeakVariation asks for new peak heights),
and noise is a random window into a precomputed bank, so a 1024x1024 frame costs
a few array passes.  Coordinates are sensor pixels: a peak at ``PeakStartX`` stays
there whatever the region of interest or binning.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIM_MODES = ("LinearRamp", "Peaks", "Sine", "Offset&Noise")
NUMPY_TYPES = {
    "Int8": np.int8, "UInt8": np.uint8, "Int16": np.int16, "UInt16": np.uint16,
    "Int32": np.int32, "UInt32": np.uint32, "Int64": np.int64, "UInt64": np.uint64,
    "Float32": np.float32, "Float64": np.float64,
}


@dataclass(frozen=True)
class FrameSettings:
    """Everything that shapes one frame (a snapshot of the cam's parameters)."""

    mode: str = "Peaks"
    data_type: str = "UInt8"
    min_x: int = 0
    min_y: int = 0
    size_x: int = 1024
    size_y: int = 1024
    bin_x: int = 1
    bin_y: int = 1
    reverse_x: bool = False
    reverse_y: bool = False
    gain: float = 1.0
    gain_x: float = 1.0
    gain_y: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    peak_start_x: int = 512
    peak_start_y: int = 512
    peak_width_x: int = 20
    peak_width_y: int = 20
    peak_num_x: int = 1
    peak_num_y: int = 1
    peak_step_x: int = 100
    peak_step_y: int = 100
    peak_variation: float = 0.0

    def output_shape(self) -> tuple[int, int]:
        """(rows, columns) of the frame after region and binning."""
        return max(1, self.size_y // max(1, self.bin_y)), max(1, self.size_x // max(1, self.bin_x))


def _gaussians(coords: np.ndarray, start: int, step: int, count: int, width: int) -> np.ndarray:
    """(count, len(coords)) unit-height Gaussian profiles centred at start + i*step."""
    centres = start + step * np.arange(max(1, count), dtype=np.float32)
    sigma = max(float(width), 0.5)
    d = (coords[None, :] - centres[:, None]) / sigma
    return np.exp(-0.5 * d * d, dtype=np.float32)


class FrameSimulator:
    """Makes frames for a sensor of ``max_x`` by ``max_y`` pixels."""

    def __init__(self, max_x: int = 1024, max_y: int = 1024, seed: int | None = None):
        self.max_x, self.max_y = max_x, max_y
        self._rng = np.random.default_rng(seed)
        self._noise_bank = self._rng.random(max_x * max_y + 65_536, dtype=np.float32)
        self._cache_key: FrameSettings | None = None
        self._profiles: tuple[np.ndarray, np.ndarray] | None = None
        self._clean: np.ndarray | None = None
        self._ramp_counter = 0

    def reset(self) -> None:
        """ADSimDetector's Reset: forget cached images and restart the ramp."""
        self._cache_key = None
        self._ramp_counter = 0

    def settings_valid(self, s: FrameSettings) -> FrameSettings:
        """Clip the region to the sensor, as the driver does with SizeX/MinX."""
        min_x = int(np.clip(s.min_x, 0, self.max_x - 1))
        min_y = int(np.clip(s.min_y, 0, self.max_y - 1))
        size_x = int(np.clip(s.size_x, 1, self.max_x - min_x))
        size_y = int(np.clip(s.size_y, 1, self.max_y - min_y))
        return FrameSettings(**{**s.__dict__, "min_x": min_x, "min_y": min_y,
                                "size_x": size_x, "size_y": size_y,
                                "bin_x": max(1, int(s.bin_x)), "bin_y": max(1, int(s.bin_y))})

    def frame(self, s: FrameSettings) -> np.ndarray:
        """One read-only 2-D frame (rows = Y, columns = X) of ``s.data_type``."""
        clean = self._clean_image(s)
        rows, cols = clean.shape
        image = clean
        if s.noise:
            n = rows * cols
            start = int(self._rng.integers(0, self._noise_bank.size - n))
            image = clean + s.noise * self._noise_bank[start:start + n].reshape(rows, cols)
        dtype = NUMPY_TYPES.get(s.data_type, np.uint8)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            image = np.clip(image, info.min, info.max, out=image if image is not clean else None)
        out = image.astype(dtype)
        out.flags.writeable = False
        return out

    # -- noise-free image ----------------------------------------------------
    def _clean_image(self, s: FrameSettings) -> np.ndarray:
        if s.mode == "LinearRamp":
            self._ramp_counter += 1
            return self._finish(self._ramp(s), s)
        key = s
        if s.mode == "Peaks" and s.peak_variation:
            return self._finish(self._peaks(s, vary=True), s)
        if key != self._cache_key or self._clean is None:
            if s.mode == "Peaks":
                raw = self._peaks(s, vary=False)
            elif s.mode == "Sine":
                raw = self._sine(s)
            else:
                raw = np.zeros((s.size_y, s.size_x), dtype=np.float32)
            self._clean = self._finish(raw, s)
            self._clean.flags.writeable = False
            self._cache_key = key
        return self._clean

    def _coords(self, s: FrameSettings) -> tuple[np.ndarray, np.ndarray]:
        x = np.arange(s.min_x, s.min_x + s.size_x, dtype=np.float32)
        y = np.arange(s.min_y, s.min_y + s.size_y, dtype=np.float32)
        return x, y

    def _peaks(self, s: FrameSettings, vary: bool) -> np.ndarray:
        x, y = self._coords(s)
        gx = _gaussians(x, s.peak_start_x, s.peak_step_x, s.peak_num_x, s.peak_width_x)
        gy = _gaussians(y, s.peak_start_y, s.peak_step_y, s.peak_num_y, s.peak_width_y)
        heights = np.ones((gy.shape[0], gx.shape[0]), dtype=np.float32)
        if vary:
            spread = s.peak_variation / 100.0
            heights += spread * self._rng.uniform(-1, 1, heights.shape).astype(np.float32)
        # sum over the grid of peaks of height h_ij * gy_j(y) * gx_i(x)
        return (gy.T @ heights) @ gx * np.float32(s.gain)

    def _ramp(self, s: FrameSettings) -> np.ndarray:
        x, y = self._coords(s)
        return (y[:, None] * np.float32(s.gain_y) + x[None, :] * np.float32(s.gain_x)
                + np.float32(self._ramp_counter * s.gain))

    def _sine(self, s: FrameSettings) -> np.ndarray:
        x, y = self._coords(s)
        sx = np.sin(2 * np.pi * x / self.max_x * 4, dtype=np.float32) * np.float32(s.gain_x)
        sy = np.sin(2 * np.pi * y / self.max_y * 4, dtype=np.float32) * np.float32(s.gain_y)
        return (sy[:, None] + sx[None, :] + 2) * np.float32(s.gain * 32)

    def _finish(self, raw: np.ndarray, s: FrameSettings) -> np.ndarray:
        """Offset, binning (sums) and reversal."""
        image = raw.astype(np.float32, copy=False)
        if s.bin_x > 1 or s.bin_y > 1:
            rows, cols = s.output_shape()
            image = image[:rows * s.bin_y, :cols * s.bin_x]
            image = image.reshape(rows, s.bin_y, cols, s.bin_x).sum(axis=(1, 3))
        if s.reverse_x:
            image = image[:, ::-1]
        if s.reverse_y:
            image = image[::-1, :]
        if s.offset:
            image = image + np.float32(s.offset)
        return np.ascontiguousarray(image, dtype=np.float32)
