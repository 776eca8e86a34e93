"""The ``beamline`` console script.  Each subcommand lives in ``loader.commands.<name>``
and is imported only when used, so ``beamline --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from iocs import DEFAULT_PORTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beamline", description="A beamline declared in data.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sim", help="start the simulated IOCs (gp: and ad:) on loopback")
    p.add_argument("--gp-port", type=int, default=DEFAULT_PORTS["gp"])
    p.add_argument("--ad-port", type=int, default=DEFAULT_PORTS["ad"])
    p.add_argument("--data-dir", default=None, help="where the ad: IOC writes HDF5 files")
    p.add_argument("--motors", type=int, default=16)
    p.add_argument("--only", choices=["gp", "ad"], default=None, help="start one IOC only")

    p = sub.add_parser("validate", help="check schemas and cross-references; exit 1 on any problem")
    p.add_argument("beamline", nargs="?", default=None)
    p.add_argument("--config", default=None, help="YAML file (default: search order of DESIGN.md)")

    p = sub.add_parser("devices", help="table of the beamline's devices")
    p.add_argument("beamline")
    p.add_argument("--config", default=None)
    p.add_argument("--labels", nargs="+", default=None, help="only entries with one of these labels")

    p = sub.add_parser("check", help="load, connect and print the status table")
    p.add_argument("beamline")
    p.add_argument("--config", default=None)
    p.add_argument("--labels", nargs="+", default=None, help="load only entries with these labels")
    p.add_argument("--session", action="store_true", help="also start the session (RunEngine, catalog)")
    p.add_argument("--timeout", type=float, default=None, help="connection timeout, seconds")

    p = sub.add_parser("shell", help="IPython with the beamline session")
    p.add_argument("beamline")
    p.add_argument("--config", default=None)

    p = sub.add_parser("demo", help="start IOCs if needed, load, run a short experiment")
    p.add_argument("beamline")
    p.add_argument("--config", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--gp-port", type=int, default=None, help="gp: IOC port (default: from $EPICS_CA_ADDR_LIST, else 5064)")
    p.add_argument("--ad-port", type=int, default=None, help="ad: IOC port (default: from $EPICS_CA_ADDR_LIST, else 5066)")

    p = sub.add_parser("findpv", help="which loaded objects read or write a PV")
    p.add_argument("pv")
    p.add_argument("--beamline", default="training")
    p.add_argument("--config", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"loader.commands.{args.command}")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
