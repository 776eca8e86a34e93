"""``beamline findpv <PV>``: which objects of the loaded beamline read and write a PV."""
from __future__ import annotations

import argparse
import sys

from ..config import ConfigNotFound
from ..problems import ConfigError


def run(args: argparse.Namespace) -> int:
    from ..beamline import load_beamline
    try:
        bl = load_beamline(args.beamline, config=args.config, session=False)
    except (ConfigNotFound, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = bl.findpv(args.pv)
    for kind in ("read", "write"):
        print(f"{kind}: {', '.join(found[kind]) or '-'}")
    return 0 if (found["read"] or found["write"]) else 1
