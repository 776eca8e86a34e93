"""Peak-finding plans of the training notebooks (``noisy`` vs ``m1``).

The statistics are bluesky's :class:`~bluesky.callbacks.fitting.PeakStats`,
subscribed to each scan; the plans only decide where to scan next and where to
leave the motor.  Called without devices they use the current session's
``noisy`` and ``m1``.  Each plan returns the peak position it moved to.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from bluesky import plan_stubs as bps
from bluesky import plans as bp
from bluesky import preprocessors as bpp
from bluesky.callbacks.fitting import PeakStats

from loader.session import default_device

logger = logging.getLogger(__name__)

__all__ = ["peak_scan", "two_pass_scan", "findpeak_multipass", "repeat_findpeak", "PeakNotFound"]


class PeakNotFound(RuntimeError):
    """The scan saw no peak (flat or empty data)."""


def _field(obj, field: str | None) -> str:
    """The data key PeakStats should use for ``obj`` (its first hinted field)."""
    if field:
        return field
    hinted = (getattr(obj, "hints", None) or {}).get("fields") or []
    return hinted[0] if hinted else obj.name


def _maximum(ps: PeakStats) -> float:
    """Where the scan's largest reading was."""
    if ps.max is None:
        raise PeakNotFound(f"no data for {ps.y!r} vs {ps.x!r}")
    return float(ps.max[0])


def _center(ps: PeakStats, low: float, high: float) -> float:
    """Half-max midpoint when it lies in the scanned range, else the maximum."""
    maximum = _maximum(ps)
    if ps.cen is not None and np.isfinite(ps.cen) and low <= ps.cen <= high:
        return float(ps.cen)
    return maximum


def peak_scan(detector=None, motor=None, start: float = -2.0, stop: float = 2.0,
              num: int = 41, relative: bool = False, y_field: str | None = None,
              md: dict | None = None):
    """One scan with PeakStats attached; returns the PeakStats (``.cen``, ``.fwhm``, ...)."""
    detector = detector if detector is not None else default_device("noisy")
    motor = motor if motor is not None else default_device("m1")
    ps = PeakStats(_field(motor, None), _field(detector, y_field))
    scan = bp.rel_scan if relative else bp.scan
    yield from bpp.subs_wrapper(scan([detector], motor, start, stop, num, md=md), ps)
    return ps


def two_pass_scan(detector=None, motor=None, start: float = -2.0, stop: float = 2.0,
                  num: int = 41, fine_num: int = 31, fine_span: float | None = None,
                  y_field: str | None = None, md: dict | None = None):
    """Coarse scan over ``start..stop``, fine scan around its peak, move there.

    The fine scan spans ``fine_span`` (default: two coarse steps, or twice the
    coarse FWHM when that is wider), centred on the coarse peak: the true peak
    lies within half a coarse step of the coarse maximum.
    """
    motor = motor if motor is not None else default_device("m1")
    md = dict(md or {}, peak_finder="two_pass_scan")
    coarse = yield from peak_scan(detector, motor, start, stop, num, y_field=y_field,
                                  md=dict(md, **{"pass": 1}))
    # the coarse maximum, not its half-max midpoint: a peak narrower than a coarse
    # step, or one step from the range's end, has no half-max crossing on one side,
    # and the midpoint was then a step or more off (the fine pass missed the peak)
    center = _maximum(coarse)
    step = abs(stop - start) / max(num - 1, 1)
    span = fine_span or max(2 * step, 2 * (coarse.fwhm or 0.0))
    low, high = center - span / 2, center + span / 2
    if abs(stop - high) < abs(stop - low):   # start the fine pass where the motor already is
        low, high = high, low
    fine = yield from peak_scan(detector, motor, low, high, fine_num,
                                y_field=y_field, md=dict(md, **{"pass": 2}))
    center = _center(fine, center - span / 2, center + span / 2)
    yield from bps.mv(motor, center)
    logger.info("two_pass_scan: %s peak at %s=%.5g (fwhm %s)", fine.y, fine.x, center, fine.fwhm)
    return center


def findpeak_multipass(detector=None, motor=None, width: float = 2.2, num: int = 23,
                       passes: int = 4, magnify: float = 1.2, y_field: str | None = None,
                       md: dict | None = None):
    """Relative scans about the motor's position, each narrowed to ``magnify``
    times the previous FWHM; the motor is left at the last peak centre."""
    motor = motor if motor is not None else default_device("m1")
    md = dict(md or {}, peak_finder="findpeak_multipass")
    center = None
    for n in range(1, passes + 1):
        ps = yield from peak_scan(detector, motor, -width / 2, width / 2, num, relative=True,
                                  y_field=y_field, md=dict(md, **{"pass": n, "width": width}))
        here = ps.x_data[len(ps.x_data) // 2] if len(ps.x_data) else 0.0
        center = _center(ps, here - width, here + width)
        yield from bps.mv(motor, center)
        step = width / max(num - 1, 1)
        # narrow to the measured peak, but never below two steps of this pass
        width = magnify * ps.fwhm if ps.fwhm else width / 2
        width = max(width, 2 * step / magnify)
    logger.info("findpeak_multipass: peak at %.5g after %d passes", center, passes)
    return center


def repeat_findpeak(iters: int = 2, detector=None, motor=None, spread: float = 0.5,
                    seed: int | None = None, md: dict | None = None, **kwargs: Any):
    """Run :func:`findpeak_multipass` ``iters`` times, each from a start offset
    by up to ``spread`` from where the motor is; returns the centres found
    (their scatter tells how reproducible the alignment is)."""
    motor = motor if motor is not None else default_device("m1")
    rng = np.random.default_rng(seed)
    centers = []
    for i in range(1, iters + 1):
        if spread:
            yield from bps.mvr(motor, float(rng.uniform(-spread, spread)))
        center = yield from findpeak_multipass(detector, motor,
                                               md=dict(md or {}, iteration=i), **kwargs)
        centers.append(center)
    logger.info("repeat_findpeak: centres %s", centers)
    return centers
