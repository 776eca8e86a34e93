"""Temperature plans: go to a setpoint and wait (bounded) until it has settled,
then count.  Called without devices they use the session's ``temperature``.

The ``temperature`` positioner reports its move done once the readback is
within its tolerance of the setpoint, so "settled" is the positioner's own
status; ``timeout`` bounds the wait and a timeout fails the plan with a clear
error instead of waiting for ever.
"""
from __future__ import annotations

import logging

from bluesky import plan_stubs as bps
from bluesky import plans as bp

from loader.session import default_device

logger = logging.getLogger(__name__)

__all__ = ["go_to_temperature", "temperature_count"]


def go_to_temperature(setpoint: float, temperature=None, tolerance: float | None = None,
                      timeout: float = 60.0):
    """Move ``temperature`` to ``setpoint`` and wait (at most ``timeout`` s) for it to settle.

    ``tolerance`` (optional) sets the positioner's in-position band first.
    Returns the readback once settled.
    """
    temperature = temperature if temperature is not None else default_device("temperature")
    if tolerance is not None:
        band = getattr(temperature, "tolerance", None)
        if band is None:
            raise ValueError(f"{temperature.name} has no tolerance to set")
        yield from bps.mv(band, tolerance, timeout=timeout)
    logger.info("%s: going to %s (at most %s s)", temperature.name, setpoint, timeout)
    yield from bps.mv(temperature, setpoint, timeout=timeout)
    readback = getattr(temperature, "readback", temperature)
    reading = yield from bps.rd(readback)
    logger.info("%s settled at %s (setpoint %s)", temperature.name, reading, setpoint)
    return reading


def temperature_count(setpoint: float, detectors=None, num: int = 1, temperature=None,
                      tolerance: float | None = None, timeout: float = 60.0,
                      md: dict | None = None):
    """Go to ``setpoint``, wait for it to settle, then ``count`` the detectors
    (default: the session's ``scaler1``) together with the temperature."""
    temperature = temperature if temperature is not None else default_device("temperature")
    if detectors is None:
        detectors = [default_device("scaler1")]
    yield from go_to_temperature(setpoint, temperature, tolerance=tolerance, timeout=timeout)
    md = dict(md or {}, temperature_setpoint=setpoint)
    return (yield from bp.count(list(detectors) + [temperature], num=num, md=md))
