"""``beamline sim``: run the simulated IOCs in the foreground until Ctrl-C."""
from __future__ import annotations

import argparse

from iocs.launcher import serve_foreground


def run(args: argparse.Namespace) -> int:
    ports = {"gp": args.gp_port, "ad": args.ad_port}
    if args.only:
        ports = {args.only: ports[args.only]}
    return serve_foreground(ports, data_dir=args.data_dir, motors=args.motors)
