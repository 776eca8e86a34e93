"""NeXus/HDF5 file writer (apstools ``NXWriter``), one file per run in
``paths.nexus`` (default ``<data>/nexus``).  Off unless enabled in the YAML."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def nexus_writer(beamline, directory: str | None = None, aps: bool = False,
                 warn_on_missing_content: bool = False, **options: Any):
    """Entry point ``loader.callbacks: nexus``; ``aps=True`` adds the APS-specific groups."""
    from apstools.callbacks import NXWriter, NXWriterAPS

    writer = (NXWriterAPS if aps else NXWriter)(**options)
    folder = Path(directory or beamline.paths.get("nexus") or Path(beamline.paths["data"]) / "nexus")
    folder.mkdir(parents=True, exist_ok=True)
    writer.file_path = folder
    writer.warn_on_missing_content = warn_on_missing_content
    return writer
