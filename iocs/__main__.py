"""``python -m iocs gp|ad|all [--port N] [--prefix P] [--data-dir D]``."""
from __future__ import annotations

import argparse
import sys

from . import DEFAULT_PORTS, DEFAULT_PREFIXES, network


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m iocs", description=__doc__)
    parser.add_argument("ioc", choices=["gp", "ad", "all"])
    parser.add_argument("--port", type=int, default=None,
                        help="CA server port (default: gp 5064, ad 5066; 'all' uses PORT and PORT+2)")
    parser.add_argument("--prefix", default=None, help="PV prefix (default gp: / ad:)")
    parser.add_argument("--host", default=network.LOOPBACK,
                        help="interface to listen on (default 127.0.0.1, loopback only)")
    parser.add_argument("--data-dir", default=None, help="ad: where HDF5 files may be written")
    parser.add_argument("--motors", type=int, default=16, help="gp: number of motor records")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ioc == "all":
        from .launcher import serve_foreground
        base = args.port or DEFAULT_PORTS["gp"]
        ports = {"gp": base, "ad": base + 2 if args.port else DEFAULT_PORTS["ad"]}
        return serve_foreground(ports, data_dir=args.data_dir, motors=args.motors)
    port = args.port or DEFAULT_PORTS[args.ioc]
    prefix = args.prefix or DEFAULT_PREFIXES[args.ioc]
    if args.ioc == "gp":
        from .gp.ioc import run
        run(prefix=prefix, port=port, host=args.host, motors=args.motors)
    else:
        from .ad.ioc import run
        run(prefix=prefix, port=port, host=args.host, data_dir=args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
