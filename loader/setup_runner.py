"""Run the YAML's ``setup`` actions on connected devices (step 6 of a load).

Actions come from the ``loader.setups`` entry points.  A device whose setup
fails is reported (and left out by the loader); the others go on.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

logger = logging.getLogger(__name__)


@dataclass
class SetupContext:
    """What an action may need beyond its device (it asks by taking ``context=``)."""

    beamline: str
    config_path: Path
    config: Mapping[str, Any]
    devices: Mapping[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> dict[str, Path]:
        """The config's ``paths`` resolved as the session resolves them."""
        from .session import resolve_paths
        return resolve_paths(self.config.get("paths"))


def available_actions() -> tuple[dict[str, Callable], list]:
    """Setup actions by name, and the plugins that could not be loaded."""
    from .plugins import SETUPS, load_group, must_be_callable
    return load_group(SETUPS, must_be_callable)


def run_action(action: Callable, device, options: Mapping[str, Any], context: SetupContext):
    """Call one action; returns what it exports (a mapping) or ``{}``."""
    kwargs = dict(options)
    try:
        takes_context = "context" in inspect.signature(action).parameters
    except (TypeError, ValueError):
        takes_context = False
    if takes_context:
        kwargs["context"] = context
    exported = action(device, **kwargs)
    if exported is None:
        return {}
    if not isinstance(exported, Mapping):
        raise TypeError(f"setup action returned {type(exported).__name__}, expected a mapping or None")
    return dict(exported)


def run_setups(devices: Mapping[str, Any], setup: Mapping[str, list], actions: Mapping[str, Callable],
               context: SetupContext, times: dict[str, float] | None = None,
               unavailable: Mapping[str, str] | None = None
               ) -> tuple[dict[str, str | None], dict[str, dict[str, Any]]]:
    """Run each device's steps in order (devices in YAML order).

    Returns (device -> ``None`` or why its setup failed, device -> exported objects).
    Devices not in ``devices`` (not selected, or failed earlier) are skipped.
    ``unavailable`` says why an action's plugin could not be loaded.
    """
    import time
    errors: dict[str, str | None] = {}
    exports: dict[str, dict[str, Any]] = {}
    for name, steps in (setup or {}).items():
        if name not in devices or not isinstance(steps, list):
            continue
        t0 = time.monotonic()
        errors[name] = None
        for index, step in enumerate(steps):
            options = {k: v for k, v in step.items() if k != "action"}
            action_name = step.get("action")
            action = actions.get(action_name)
            if action is None:
                why = (unavailable or {}).get(action_name, "no such setup action")
                errors[name] = f"setup[{index}] {action_name!r}: {why}"
                break
            try:
                exports.setdefault(name, {}).update(run_action(action, devices[name], options, context))
            except Exception as exc:
                errors[name] = f"setup[{index}] {action_name}: {type(exc).__name__}: {exc}"
                logger.warning("setup of %s failed: %s", name, errors[name], exc_info=True)
                break
        if times is not None:
            times[name] = time.monotonic() - t0
    return errors, exports
