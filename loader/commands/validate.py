"""``beamline validate [beamline]``: every problem of the YAML and the happi
database at once; exit 0 only when clean.  Reads files, never writes them."""
from __future__ import annotations

import argparse
import sys

from ..config import ConfigNotFound, all_configs
from ..problems import format_problems
from ..validation import validate


def run(args: argparse.Namespace) -> int:
    try:
        if args.beamline or args.config:
            reports = [validate(args.beamline, config=args.config)]
        else:
            reports = [validate(config=path) for path in all_configs()]
    except ConfigNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not reports:
        print("error: no beamline configuration found", file=sys.stderr)
        return 2
    failed = 0
    for report in reports:
        db = report.database
        if report.ok:
            entries = sum(1 for d in db.docs.values() if isinstance(d, dict)
                          and d.get("beamline") == report.beamline)
            print(f"OK  {report.config_path}  +  {db.path}: beamline {report.beamline!r}, "
                  f"{entries} entries, no problems")
        else:
            failed += 1
            print(f"{len(report.problems)} problem(s) in beamline configuration {report.config_path}:",
                  file=sys.stderr)
            print(format_problems(report.problems), file=sys.stderr)
    return 1 if failed else 0
