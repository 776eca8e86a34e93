"""Load a beamline declared in data (happi entries + YAML) into a Bluesky session.

``from loader import load_beamline; bl = load_beamline("training")``
"""
from __future__ import annotations

__all__ = ["load_beamline", "Beamline"]


def __getattr__(name):  # imported lazily: `beamline --help` must not pay for ophyd
    if name == "load_beamline":
        from .beamline import load_beamline
        return load_beamline
    if name == "Beamline":
        from .beamline import Beamline
        return Beamline
    raise AttributeError(name)
