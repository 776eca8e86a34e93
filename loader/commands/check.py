"""``beamline check <beamline>``: load, connect, set up, print the status table;
exit 1 if any device (or the session, with --session) failed."""
from __future__ import annotations

import argparse
import sys

from ..config import ConfigNotFound
from ..problems import ConfigError


def run(args: argparse.Namespace) -> int:
    from ..beamline import load_beamline
    try:
        bl = load_beamline(args.beamline, config=args.config, labels=getattr(args, "labels", None),
                           session=getattr(args, "session", False), timeout=getattr(args, "timeout", None))
    except ConfigNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    table = bl.status()
    print(table)
    return 1 if (table.failed or bl.session_error) else 0
