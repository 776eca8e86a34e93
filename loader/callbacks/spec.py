"""SPEC data file writer (apstools ``SpecWriterCallback``).

The file (``YYYYmmdd-HHMMSS.dat`` unless named in the options) is created in the
config's ``paths.spec`` when the first scan ends; use
``bl.callbacks["spec"].newfile(...)`` to start another.
"""
from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def spec_writer(beamline, directory: str | None = None, filename: str | None = None,
                **options: Any):
    """Entry point ``loader.callbacks: spec``; returns the apstools writer
    (its ``receiver`` is what gets subscribed)."""
    from apstools.callbacks import SpecWriterCallback

    folder = Path(directory or beamline.paths["spec"])
    folder.mkdir(parents=True, exist_ok=True)
    name = filename or datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".dat"
    path = folder / name
    writer = SpecWriterCallback(RE=beamline.RE, **options)
    # newfile() (unlike the constructor) also accepts a file that already exists; without
    # RE it leaves scan_id alone (the session's persistent metadata owns the count)
    writer.newfile(path)
    logger.info("writing to SPEC file: %s (created when the next scan ends)", path)
    return writer
