"""``ad_file_paths``: where an area detector's HDF5 files are written and read.

By default both paths are ``<paths.data>/<subdirectory>/%Y/%m/%d/`` (the session's
data directory, ``$BEAMLINE_DATA_DIR`` overriding the YAML), because IOC and
session share a file system here.  For an IOC on another host give
``write_path`` (as the IOC sees it) and ``read_path`` (as this process sees it).
"""
from __future__ import annotations

import os
from pathlib import Path

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
