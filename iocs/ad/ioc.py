"""The ``ad:`` IOC: ADSimDetector ``cam1:`` feeding ``image1:`` and ``HDF1:``."""
from __future__ import annotations

import os
import tempfile

from ..server import run_ioc
from .cam import SimDetectorDriver
from .hdf5_plugin import HDF5Plugin
from .image_plugin import ImagePlugin

MAX_SIZE = 1024


def default_data_dir() -> str:
    """Where HDF1 writes when no ``--data-dir`` is given."""
    return os.path.join(tempfile.gettempdir(), "ad_sim_data")


def build(prefix: str = "ad:", data_dir: str | None = None,
          max_x: int = MAX_SIZE, max_y: int = MAX_SIZE):
    """The driver and its plugins, wired together (not yet serving)."""
    data_dir = str(data_dir or default_data_dir())
    os.makedirs(data_dir, exist_ok=True)
    cam = SimDetectorDriver(prefix + "cam1:", max_x=max_x, max_y=max_y)
    image = ImagePlugin(prefix + "image1:", source_port=cam.port, max_elements=max_x * max_y)
    hdf = HDF5Plugin(prefix + "HDF1:", source_port=cam.port, data_dir=data_dir)
    cam.sinks = [image, hdf]
    return cam, image, hdf


def run(prefix: str = "ad:", port: int = 5066, host: str = "127.0.0.1",
        data_dir: str | None = None) -> None:
    """Serve the ``ad:`` IOC until interrupted."""
    cam, image, hdf = build(prefix, data_dir)
    run_ioc("ad", [cam, image, hdf], port=port, host=host,
            startup_hooks=[cam.startup, hdf.startup])
