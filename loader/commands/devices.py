"""``beamline devices <beamline>``: the device table (name, class, labels, PV
prefix, description), generated from the happi entries; nothing is connected."""
from __future__ import annotations

import argparse
import sys

from ..config import ConfigNotFound
from ..happi_db import select_items
from ..problems import ConfigError
from ..validation import validate


def device_rows(report, labels=None) -> list[tuple[str, str, str, str, str]]:
    """(name, class, labels, prefix, description) of the entries a load would select."""
    config = report.config or {}
    labels = labels or (config.get("load") or {}).get("labels")
    items = select_items(report.database.docs, config["beamline"], labels, skip=report.entry_reasons())
    rows = [(i.name, i.device_class or "", ", ".join(i.labels or []), i.prefix or "",
             i.documentation or "") for i in items]
    selected = {i.name for i in items}
    for device, steps in (config.get("setup") or {}).items():     # objects setup will export
        for step in steps if device in selected and isinstance(steps, list) else []:
            if isinstance(step, dict) and step.get("action") == "scaler_channels":
                names = [str(n) for n in (step.get("channels") or {}).values()]
                labels_ = ", ".join(step.get("labels") or ("counter", "channel"))
                rows.append((", ".join(names), f"(channels of {device})", labels_, "",
                             f"named {device} channels, each its own object"))
    return rows


def table(rows, header=("name", "class", "labels", "PV prefix", "description")) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths[:-1]) + "  {}"
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = validate(args.beamline, config=args.config, import_classes=False)
    except ConfigNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fatal = report.of_scope("config")
    if fatal or report.database is None:
        print(str(ConfigError(fatal, "cannot list devices")), file=sys.stderr)
        return 1
    print(table(device_rows(report, getattr(args, "labels", None))))
    invalid = report.entry_reasons()
    if invalid:
        print(f"\n{len(invalid)} entr{'y' if len(invalid) == 1 else 'ies'} left out "
              "(run `beamline validate` for details): " + ", ".join(sorted(invalid)), file=sys.stderr)
    return 0
