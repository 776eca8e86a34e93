"""``beamline shell <beamline>``: IPython with the beamline session.

The namespace holds every device, the plans, ``RE``, ``cat`` (``db`` = ``cat.v1``), ``bl`` and the
usual ``bp``/``bps``/``bpp``; bluesky's magics (``%ct``, ``%wa``, ``%mov``,
``%movr``) work on the devices' labels (``%ct scalers`` counts ``scaler1`` and
prints its named channels); IPython's console log goes to ``<logs>/``.
"""
from __future__ import annotations

import argparse
from typing import Any

BANNER = """\
Beamline {name!r}: {n} devices (+{e} channel names), {p} plans, catalog {cat!r} ({runs} runs).
  %wa motor          where are the motors      %ct scalers      count the scaler
  %mov m1 0.5        move                      RE(bp.count([noisy]))
  bl.plans           the plans                 cat[-1].primary.read()
"""


def build_namespace(bl) -> dict[str, Any]:
    """What the user can type: devices, plans, RE, cat, bl and the bluesky modules."""
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    import databroker
    ns: dict[str, Any] = {"bp": bp, "bps": bps, "bpp": bpp, "databroker": databroker}
    ns.update(dict(getattr(bl, "plans", {}) or {}))
    ns.update(_devices_of(bl))
    ns.update({"bl": bl, "RE": bl.RE, "cat": bl.cat, "callbacks": bl.callbacks})
    if hasattr(bl.cat, "v1"):
        ns["db"] = bl.cat.v1          # the v1 API the training notebooks use
    if hasattr(bl, "findpv"):
        ns["findpv"] = bl.findpv
    return ns


def _devices_of(bl) -> dict[str, Any]:
    """name -> object: the devices and what their setup exported (``I0``, ``diode``, ...)."""
    return {name: bl[name] for name in bl}


def configure_shell(shell, bl) -> None:
    """Register bluesky's magics and start the IPython console log in ``bl.paths['logs']``."""
    from bluesky.magics import BlueskyMagics
    from bluesky.utils import ProgressBarManager

    from loader.logging_setup import start_console_log
    from loader.watchdog import set_waiting_hook

    shell.register_magics(BlueskyMagics)
    set_waiting_hook(bl.RE, ProgressBarManager())   # behind the disconnect watchdog
    start_console_log(shell, bl.paths["logs"])


def run(args: argparse.Namespace) -> int:
    from IPython import start_ipython
    from traitlets.config import Config

    from loader import load_beamline
    from loader.config import find_config, read_yaml
    from loader.logging_setup import setup_logging
    from loader.session import resolve_paths

    config_path = find_config(args.beamline, args.config)
    setup_logging(resolve_paths((read_yaml(config_path).data or {}).get("paths"))["logs"])
    bl = load_beamline(args.beamline, config=str(config_path))
    ns = build_namespace(bl)
    ns["_beamline_session_"] = bl
    cfg = Config()
    cfg.TerminalIPythonApp.display_banner = True
    cfg.TerminalInteractiveShell.banner2 = BANNER.format(
        name=args.beamline, n=len(bl.devices), e=len(bl) - len(bl.devices), p=len(bl.plans),
        cat=getattr(bl.cat, "name", "?"), runs=len(list(bl.cat)))
    cfg.InteractiveShellApp.exec_lines = [
        "from loader.commands.shell import configure_shell as _configure_shell",
        "_configure_shell(get_ipython(), _beamline_session_); del _configure_shell",
    ]
    start_ipython(argv=[], user_ns=ns, config=cfg)
    return 0
