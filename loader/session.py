"""Step 7 of ``load_beamline``: the Bluesky session around the connected devices.

``build_session(bl, config)`` gives the beamline a RunEngine with the YAML's
metadata (``bl.RE``), its databroker catalog (``bl.cat``), the plans of the
``loader.plans`` entry points (``bl.plans``), the callbacks the YAML enables
(``bl.callbacks``), the resolved ``paths`` (``bl.paths``) and logging to
``paths.logs``.  The YAML sections it reads: ``metadata``, ``catalog``,
``callbacks`` and ``paths``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import catalogs, storage_guard
from .plugins import CALLBACKS, PLANS, load_group, must_be_callable, must_be_generator_function

logger = logging.getLogger(__name__)

DATA_DIR_ENV = catalogs.DATA_DIR_ENV
DEFAULT_PATHS = {
    "data": catalogs.DEFAULT_DATA_DIR,
    "logs": ".logs",
    "spec": "{data}/spec",
    "metadata": "{data}/metadata",
    "nexus": "{data}/nexus",
}
DEFAULT_CALLBACKS = [
    {"name": "catalog", "enabled": True},
    {"name": "spec", "enabled": True},
    {"name": "best_effort", "enabled": True},
    {"name": "nexus", "enabled": False},
]

_current = None


@dataclass
class Session:
    """What :func:`build_session` made, and what it could not make."""

    RE: Any
    cat: Any
    plans: dict[str, Any]
    callbacks: dict[str, Any]
    paths: dict[str, Path]
    log_file: Path | None = None
    problems: list[str] = field(default_factory=list)


def resolve_paths(paths: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None
                  ) -> dict[str, Path]:
    """The YAML's ``paths`` with defaults filled in, ``{data}`` expanded, made absolute
    (relative to ``cwd``, the working directory by default, as ``./.logs`` is).
    ``$BEAMLINE_DATA_DIR`` overrides ``paths.data``."""
    merged = dict(DEFAULT_PATHS)
    merged.update({k: str(v) for k, v in (paths or {}).items() if v is not None})
    if os.environ.get(DATA_DIR_ENV):
        merged["data"] = os.environ[DATA_DIR_ENV]
    base = Path(cwd) if cwd else Path.cwd()

    def absolute(value: str) -> Path:
        path = Path(value).expanduser()
        return (path if path.is_absolute() else base / path).resolve()

    data = absolute(merged["data"])
    resolved = {"data": data}
    for key, value in merged.items():
        if key != "data":
            resolved[key] = absolute(value.replace("{data}", str(data)))
    return resolved


def build_session(beamline, config: Mapping[str, Any]) -> Session:
    """Give ``beamline`` its RE, cat, plans and callbacks; start logging.

    A plan or callback that cannot be loaded is reported in
    ``Session.problems`` (and the log) and left out; the session still starts.
    """
    from .logging_setup import setup_logging
    from .run_engine import make_run_engine

    config = dict(config or {})
    paths = resolve_paths(config.get("paths"))
    log_file = setup_logging(paths["logs"])
    logger.info("session for beamline %r: data in %s", getattr(beamline, "name", "?"), paths["data"])

    problems: list[str] = []
    RE = make_run_engine(config.get("metadata"), paths["metadata"])
    cat_name = config.get("catalog") or "training"
    catalogs.use_data_dir(paths["data"], cat_name)
    cat = catalogs.DeferredCatalog(cat_name, paths["data"])   # databroker imported at first use

    plans, plan_errors = load_group(PLANS, must_be_generator_function)
    problems += [str(e) for e in plan_errors]

    beamline.RE = RE
    beamline.cat = cat
    beamline.plans = plans
    beamline.paths = paths
    callbacks, callback_problems = subscribe_callbacks(
        beamline, RE, config.get("callbacks", DEFAULT_CALLBACKS))
    problems += callback_problems
    beamline.callbacks = callbacks
    storage_guard.install(RE, callbacks.get("catalog"))   # no run the catalog cannot store

    session = Session(RE, cat, plans, callbacks, paths, log_file, problems)
    beamline.session = session
    set_current(beamline)
    logger.info("session ready: catalog %r, %d plans, callbacks %s, scan_id=%s",
                cat_name, len(plans), sorted(callbacks), RE.md.get("scan_id"))
    return session


def subscribe_callbacks(beamline, RE, specs: list[Mapping[str, Any]] | None
                        ) -> tuple[dict[str, Any], list[str]]:
    """Make and subscribe (guarded) each enabled callback; the catalog writer first."""
    from .callbacks import guarded
    from .plugins import callback_problem

    factories, errors = load_group(CALLBACKS, must_be_callable)
    problems = [str(e) for e in errors]
    wanted = [dict(s) if isinstance(s, Mapping) else {"name": str(s)} for s in (specs or [])]
    wanted.sort(key=lambda s: s.get("name") != "catalog")  # stable: catalog first
    made: dict[str, Any] = {}
    for spec in wanted:
        name = spec.get("name")
        if not spec.get("enabled", True):
            continue
        if name not in factories:
            problems.append(f"callback {name!r}: no such entry point in {CALLBACKS} "
                            f"(available: {', '.join(sorted(factories))})")
            logger.warning(problems[-1])
            continue
        try:
            obj = factories[name](beamline, **(spec.get("options") or {}))
        except Exception as exc:
            problems.append(f"callback {name!r} could not be made: {type(exc).__name__}: {exc}")
            logger.exception("callback %r could not be made", name)
            continue
        problem = callback_problem(obj)
        if problem:
            problems.append(f"callback {name!r} skipped, not a callback: {problem}")
            logger.warning(problems[-1])
            continue
        for i, each in enumerate(obj if isinstance(obj, (list, tuple)) else [obj]):
            receiver = getattr(each, "receiver", each)   # apstools writers expose .receiver
            RE.subscribe(guarded(name if i == 0 else f"{name}[{i}]", receiver))
        made[name] = obj
    return made, problems


def set_current(beamline) -> None:
    """Remember the most recently loaded beamline (plans find default devices in it)."""
    global _current
    _current = beamline


def current_beamline():
    """The beamline of the running session, or ``None``."""
    return _current


def default_device(name: str):
    """Device ``name`` of the current session, for plans called without that argument."""
    bl = current_beamline()
    if bl is None:
        raise LookupError(f"no beamline loaded: pass the {name!r} device explicitly "
                          "or call load_beamline() first")
    try:
        return bl[name]
    except (KeyError, TypeError):
        pass
    device = getattr(bl, name, None)
    if device is None:
        raise LookupError(f"beamline {getattr(bl, 'name', '?')!r} has no device {name!r}; "
                          "pass it explicitly")
    return device
