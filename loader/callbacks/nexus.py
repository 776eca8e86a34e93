"""NeXus/HDF5 file writer (apstools ``NXWriter``), one file per run in
``paths.nexus`` (default ``<data>/nexus``).  Off unless enabled in the YAML.

apstools writes the file in place from a background thread, so a reader (or a
crash) could meet a half-written file.  Here the file is written under a
``.part`` name and renamed only once complete: a NeXus file that exists is whole.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".part"


def _atomic(writer_class: type) -> type:
    """A subclass of apstools' ``writer_class`` whose files appear only when complete."""

    class AtomicNeXusWriter(writer_class):
        def writer(self) -> threading.Thread:
            import h5py

            final = Path(self.file_name or self.make_file_name())
            partial = final.with_name(final.name + PARTIAL_SUFFIX)

            def write() -> None:
                self._writer_active = True
                try:
                    with h5py.File(partial, "w") as self.root:
                        self.write_root(str(final))
                    os.replace(partial, final)
                    self.output_nexus_file = str(final)
                    logger.info("wrote NeXus file %s", final)
                except Exception:
                    logger.exception("NeXus file %s not written", final)
                    partial.unlink(missing_ok=True)
                finally:
                    self.root = None
                    self._writer_active = False

            # not a daemon: the interpreter waits for a file being written
            thread = threading.Thread(target=write, name=f"nexus {final.name}")
            thread.start()
            return thread

    AtomicNeXusWriter.__name__ = f"Atomic{writer_class.__name__}"
    return AtomicNeXusWriter


def nexus_writer(beamline, directory: str | None = None, aps: bool = False,
                 warn_on_missing_content: bool = False, **options: Any):
    """Entry point ``loader.callbacks: nexus``; ``aps=True`` adds the APS-specific groups."""
    from apstools.callbacks import NXWriter, NXWriterAPS

    writer = _atomic(NXWriterAPS if aps else NXWriter)(**options)
    folder = Path(directory or beamline.paths.get("nexus") or Path(beamline.paths["data"]) / "nexus")
    folder.mkdir(parents=True, exist_ok=True)
    writer.file_path = folder
    writer.warn_on_missing_content = warn_on_missing_content
    return writer
