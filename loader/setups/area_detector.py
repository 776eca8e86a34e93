"""Area detector setup: ``ad_file_paths`` (where HDF5 files are written and read)
and ``ad_peak_simulation`` (the ADSimDetector's spot, as the training instrument sets it).

By default both paths are ``<paths.data>/<subdirectory>/%Y/%m/%d/`` (the session's
data directory, ``$BEAMLINE_DATA_DIR`` overriding the YAML), because IOC and
session share a file system here.  For an IOC on another host give
``write_path`` (as the IOC sees it) and ``read_path`` (as this process sees it).
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

from ..lazy_signals import created_together
from ._common import NUMBER_OR_RANDOM, SetupValueError, check_string_field, number, put_all

logger = logging.getLogger(__name__)
DITHER_CONNECT_TIMEOUT = 2.0

options_schema = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "subdirectory": {"type": "string", "description": "below paths.data"},
        "dated": {"type": "boolean", "description": "add %Y/%m/%d/ levels (default true)"},
        "write_path": {"type": "string", "description": "directory as the IOC sees it (overrides paths.data)"},
        "read_path": {"type": "string", "description": "directory as this process sees it"},
        "create_directory": {"type": "integer", "maximum": 0,
                             "description": "areaDetector CreateDirectory: -N creates up to N missing levels"},
        "plugin": {"type": "string", "description": "attribute of the file writer (default hdf1)"},
    },
}


def ad_file_paths(device, context=None, subdirectory: str = "", dated: bool = True,
                  write_path: str | None = None, read_path: str | None = None,
                  create_directory: int = -3, plugin: str = "hdf1") -> None:
    """Point the file writer at the data directory; the IOC creates the dated levels."""
    writer = getattr(device, plugin)
    if write_path is None:
        root = context.paths["data"] if context is not None else Path.cwd() / "data"
        base = Path(root) / subdirectory if subdirectory else Path(root)
        base.mkdir(parents=True, exist_ok=True)      # the levels above the dated ones
        write_path = str(base)
    read_path = read_path or write_path
    suffix = "%Y/%m/%d/" if dated else ""
    writer.write_path_template = os.path.join(write_path, suffix)
    writer.read_path_template = os.path.join(read_path, suffix)
    writer.stage_sigs["create_directory"] = int(create_directory)


ad_file_paths.options_schema = options_schema


# -- ad_peak_simulation ---------------------------------------------------------

def ad_peak_simulation(device, center: Any = 512, width: Any = 20, gain: Any = 100,
                       noise: Any = 0, dither_x: str | None = None, dither_y: str | None = None,
                       dither_pixels: float = 3, dither_scan: str = "1 second",
                       seed: int | None = None, context=None) -> dict:
    """The ADSimDetector spot of the training instrument: one peak whose centre,
    width, intensity and noise are drawn at random each load, its centre dithered
    by a few pixels by two swait records (``dither_x``/``dither_y``, e.g.
    ``gp:userCalc9``) that write ``PeakStartX``/``PeakStartY`` over CA."""
    rng = random.Random(seed)
    try:
        cx, cy = number(center, rng), number(center, rng)
        w, g, n = number(width, rng), number(gain, rng), number(noise, rng)
    except (TypeError, ValueError):
        raise SetupValueError("center, width, gain and noise must be numbers or {uniform: [low, high]}") from None
    cam = device.cam
    settings = {"sim_mode": "Peaks", "peak_num.peak_num_x": 1, "peak_num.peak_num_y": 1,
                "peak_start.peak_start_x": int(cx), "peak_start.peak_start_y": int(cy),
                "peak_width.peak_width_x": int(w), "peak_width.peak_width_y": int(w),
                "gain": g, "noise": n}
    put_all(list(zip(created_together(cam, list(settings)), settings.values())))
    for record, axis, centre in ((dither_x, "X", int(cx)), (dither_y, "Y", int(cy))):
        if not record:
            continue
        target = f"{cam.prefix}PeakStart{axis}"
        check_string_field(target, f"{record}.OUTN", "dither output PV name")
        try:
            _dither(record, target, centre, dither_pixels, dither_scan,
                    f"{device.name}_dither_{axis.lower()}", context)
        except TimeoutError as exc:
            # the spot still works, it just holds still: not a reason to lose the detector
            logger.warning("%s: spot not dithered, %s unreachable: %s", device.name, record, exc)
            break                   # the other record is on the same IOC: no second wait
    return {}


def _dither(record: str, target: str, centre: int, pixels: float, scan: str, name: str, context) -> None:
    """swait ``record`` writes ``centre`` ± ``pixels``/2 at random to ``target`` every ``scan``.
    An input link left on A or B (INAN, INBN) is cleared first: it would overwrite
    the centre or the width at its next update, and the spot would wander off."""
    from .swait import swait_record
    fields = ["enable", "description", "channels.A.input_pv", "channels.B.input_pv",
              "channels.A.input_value", "channels.B.input_value",
              "calculation", "output_link_pv", "scanning_rate"]
    with swait_record(record, name, context, timeout=DITHER_CONNECT_TIMEOUT, fields=fields) as swait:
        put_all([(swait.channels.A.input_pv, ""), (swait.channels.B.input_pv, ""),   # (in order)
                 (swait.enable, 1),
                 (swait.description, f"{name.replace('_', ' ')}"),
                 (swait.channels.A.input_value, centre),
                 (swait.channels.B.input_value, float(pixels)),
                 (swait.calculation, "A+B*(RNDM-0.5)"),
                 (swait.output_link_pv, target),
                 (swait.scanning_rate, scan)])


ad_peak_simulation.options_schema = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "center": NUMBER_OR_RANDOM, "width": NUMBER_OR_RANDOM,
        "gain": NUMBER_OR_RANDOM, "noise": NUMBER_OR_RANDOM,
        "dither_x": {"type": "string", "description": "swait record dithering PeakStartX, e.g. gp:userCalc9"},
        "dither_y": {"type": "string", "description": "swait record dithering PeakStartY, e.g. gp:userCalc10"},
        "dither_pixels": {"type": "number", "minimum": 0},
        "dither_scan": {"type": "string"},
        "seed": {"type": "integer", "description": "fix the random draws"},
    },
}
