"""``load_beamline(name)`` and the ``Beamline`` it returns (DESIGN.md §3).

find + read config -> validate -> select happi entries -> import classes once ->
instantiate all -> connect all under one bounded wait -> setup -> session.
A device that fails at any step is left out and listed with its reason.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, MutableMapping

from . import connection_requirements
from .classes import as_a_load_imports, import_classes
from .config import find_config
from .connect import connect_all, devices_of, timed_out
from .epics_env import apply_epics_defaults
from .gc_pause import collect_dropped, gc_paused
from .happi_db import select_items
from .instantiate import build_all
from .lazy_signals import is_lazy, open_planned_channels
from .one_cpu import on_one_cpu
from .problems import ConfigError
from .setup_runner import SetupContext, available_actions, run_setups
from .validation import Report, validate

logger = logging.getLogger(__name__)

DEFAULT_CONNECTION_TIMEOUT = 10.0

READY = "ready"
INVALID = "invalid entry"
IMPORT_FAILED = "import failed"
CONSTRUCTION_FAILED = "construction failed"
NOT_CONNECTED = "not connected"
SETUP_FAILED = "setup failed"


class BeamlineLoadError(RuntimeError):
    """Raised by ``strict=True`` loads when anything failed; ``.beamline`` has the details."""

    def __init__(self, message: str, beamline: "Beamline"):
        super().__init__(message)
        self.beamline = beamline


@dataclass
class DeviceStatus:
    """One row of ``Beamline.status()``."""

    name: str
    device_class: str
    labels: list[str]
    state: str
    seconds: float = 0.0
    reason: str | None = None
    prefix: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == READY


class StatusTable(list):
    """``Beamline.status()``: a list of ``DeviceStatus`` that prints as a table."""

    footer: str = ""

    def __str__(self) -> str:
        header = ("name", "class", "labels", "state", "time/s", "reason")
        rows = [(r.name, r.device_class.rsplit(".", 1)[-1], ",".join(r.labels), r.state,
                 f"{r.seconds:.2f}", r.reason or "") for r in self]
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
                  for i, h in enumerate(header[:-1])]
        lines = ["  ".join(h.ljust(w) for h, w in zip(header[:-1], widths)) + "  " + header[-1]]
        lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 6)
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1])
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle):   # IPython
        p.text(str(self))

    @property
    def failed(self) -> list[DeviceStatus]:
        return [r for r in self if not r.ok]


def _destroy(name: str, obj: Any) -> None:
    """Release an object's Channel Access connections (ophyd's ``destroy``)."""
    if obj is not None and hasattr(obj, "destroy"):
        try:
            obj.destroy()
        except Exception:
            logger.debug("destroy(%s) failed", name, exc_info=True)


def _after_build(obj: Any) -> None:
    """Run in the building thread as soon as ``obj`` is made (see ``build_all``), on
    it and each sub-device ophyd built."""
    from ophyd import EpicsMotor

    from .devices.motor import fetch_limits_aside
    open_planned_channels(obj)          # a lazy device's PVs connect with the rest
    for dev in devices_of(obj):
        if isinstance(dev, EpicsMotor):
            fetch_limits_aside(dev)     # else ophyd's limit gets block its monitor thread
        connection_requirements.replay_missed_first_updates(dev)   # else it may never connect


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class Beamline(Mapping):
    """The loaded devices, by attribute (``bl.m1``), key (``bl["m1"]``) or label
    (``bl.labels["motor"]``); iteration gives the names.  After the session step
    also ``bl.RE``, ``bl.cat``, ``bl.plans``, ``bl.callbacks``."""

    def __init__(self, name: str, config_path: Path, labels: Iterable[str] | None = None,
                 namespace: MutableMapping[str, Any] | None = None, session: bool = True,
                 timeout: float | None = None):
        self.name = name
        self.config_path = Path(config_path)
        self.requested_labels = list(labels) if labels else None
        self.namespace = namespace
        self.want_session = session
        self.timeout = timeout
        self.config: dict = {}
        self.report: Report | None = None
        self.devices: dict[str, Any] = {}          # loaded happi devices
        self.exports: dict[str, Any] = {}          # objects setup actions exported (I0, diode, ...)
        self.export_owner: dict[str, str] = {}     # exported name -> device that exported it
        self.rows: dict[str, DeviceStatus] = {}
        self.timings: dict[str, float] = {}
        self.session_error: str | None = None
        self.plugin_errors: list = []
        self.RE = self.cat = self.session = None
        self.paths: dict[str, Path] = {}           # resolved config paths (set by the session)
        self.plans: dict = {}
        self.callbacks: dict = {}
        self._items: dict[str, Any] = {}           # name -> happi item of loaded/pending devices
        self._pending: dict[str, Any] = {}         # built but not connected (retried by reload)

    # -- mapping and attribute access ------------------------------------------
    def _objects(self) -> dict[str, Any]:
        return {**self.devices, **self.exports}

    def __getitem__(self, key: str) -> Any:
        return self._objects()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._objects(), key=_natural))

    def __len__(self) -> int:
        return len(self._objects())

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        objects = self.__dict__.get("devices", {}), self.__dict__.get("exports", {})
        for group in objects:
            if key in group:
                return group[key]
        raise AttributeError(f"beamline {self.__dict__.get('name')!r} has no device {key!r}")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._objects()))

    def __repr__(self) -> str:
        failed = len(self.status().failed)
        return (f"<Beamline {self.name!r}: {len(self.devices)} devices, {len(self.exports)} exported"
                f"{f', {failed} failed' if failed else ''}>")

    @property
    def labels(self) -> dict[str, list]:
        """label -> objects carrying it (happi labels of devices, ophyd labels of exports)."""
        groups: dict[str, list[tuple[str, Any]]] = {}
        for name, obj in self.devices.items():
            for label in getattr(self._items.get(name), "labels", None) or []:
                groups.setdefault(label, []).append((name, obj))
        for name, obj in self.exports.items():
            for label in getattr(obj, "_ophyd_labels_", ()) or ():
                groups.setdefault(label, []).append((name, obj))
        return {label: [obj for _, obj in sorted(pairs, key=lambda p: _natural(p[0]))]
                for label, pairs in sorted(groups.items())}

    def status(self) -> StatusTable:
        """One row per selected device: class, labels, state, time, reason."""
        table = StatusTable(sorted(self.rows.values(), key=lambda r: _natural(r.name)))
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        ok = sum(r.ok for r in table)
        footer = f"{ok} of {len(table)} devices ready; {phases}"
        if self.session_error:
            footer += f"\nsession: FAILED: {self.session_error}"
        elif self.session is not None and getattr(self.session, "problems", None):
            footer += "\nsession problems: " + "; ".join(self.session.problems)
        if self.plugin_errors:
            footer += "\nplugins skipped: " + "; ".join(str(e) for e in self.plugin_errors)
        table.footer = footer
        return table

    def findpv(self, pv: str) -> dict[str, list[str]]:
        """Which loaded objects read and write ``pv`` (e.g. ``gp:userCalc8.CALC``)."""
        from .findpv import findpv
        return findpv(pv, self.devices)

    # -- loading -----------------------------------------------------------------
    def _validate(self) -> Report:
        report = validate(config=self.config_path, labels=self.requested_labels, import_classes=False)
        fatal = report.of_scope("config")
        if fatal:
            raise ConfigError(fatal, f"cannot load beamline {self.name!r}")
        for p in report.of_scope("advice") + report.of_scope("setup"):
            logger.warning("%s", p)
        self.report = report
        self.config = report.config or {}
        self.name = self.config.get("beamline", self.name)
        return report

    def _selected(self, report: Report) -> tuple[list, dict[str, str]]:
        """Items to load, and invalid entries (of this selection) with their reasons."""
        labels = self.requested_labels or (self.config.get("load") or {}).get("labels")
        reasons = report.entry_reasons()
        items = select_items(report.database.docs, self.config["beamline"], labels, skip=reasons)
        wanted = set(labels) if labels else None
        invalid = {}
        for doc in report.database.docs.values():
            name = doc.get("name") if isinstance(doc, dict) else None
            if name in reasons and doc.get("beamline") == self.config["beamline"] \
                    and doc.get("active", True) is not False \
                    and (wanted is None or wanted.intersection(doc.get("labels") or []
                                                               if isinstance(doc.get("labels"), list) else [])):
                invalid[name] = "; ".join(reasons[name])
        return items, invalid

    def _timeout(self) -> float:
        if self.timeout is not None:
            return float(self.timeout)
        return float((self.config.get("epics") or {}).get("connection_timeout", DEFAULT_CONNECTION_TIMEOUT))

    def _remove(self, name: str) -> None:
        obj = self.devices.pop(name, None)
        pending = self._pending.pop(name, None)
        obj = pending if obj is None else obj
        self._items.pop(name, None)
        self.rows.pop(name, None)
        for export in [e for e, owner in self.export_owner.items() if owner == name]:
            self.exports.pop(export, None)
            self.export_owner.pop(export, None)
            self._unpublish(export)
        self._unpublish(name, obj)
        _destroy(name, obj)

    def _unpublish(self, name: str, obj: Any = None) -> None:
        ns = self.namespace
        if ns is not None and name in ns and (obj is None or ns[name] is obj):
            del ns[name]

    def _sync(self, strict: bool = False) -> dict[str, list[str]]:
        """Make the loaded set match the database: the heart of load and reload."""
        with contextlib.ExitStack() as scope:
            return self._sync_within(scope, strict)

    def _sync_within(self, scope: contextlib.ExitStack, strict: bool) -> dict[str, list[str]]:
        """:meth:`_sync`; what ``scope`` holds ends with it."""
        t_start = time.monotonic()
        self.timings = {}
        report = self._validate()
        if self.want_session and self.session is None:
            # problems met while loading reach the session's log file too
            from .logging_setup import setup_logging
            from .session import resolve_paths
            setup_logging(resolve_paths(self.config.get("paths"))["logs"])
        apply_epics_defaults(self.config.get("epics"))
        items, invalid = self._selected(report)
        self.timings["validate"] = time.monotonic() - t_start
        # from here on the work is shared out between threads on one GIL (see loader/one_cpu.py)
        scope.enter_context(on_one_cpu((self.config.get("load") or {}).get("one_cpu", True)))

        wanted = {item.name: item for item in items}
        lazy = set((self.config.get("load") or {}).get("lazy") or ())
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        previously = set(self.rows)
        known = set(self.devices) | set(self._pending)
        for name in sorted(known):
            if name not in wanted:
                self._remove(name)
                changes["removed"].append(name)
            elif self._items[name].post() != wanted[name].post() \
                    or is_lazy(self.devices.get(name, self._pending.get(name))) != (name in lazy):
                self._remove(name)
                changes["changed"].append(name)
        for name in list(self.rows):
            if name not in wanted and name not in invalid:
                if name not in changes["removed"]:
                    changes["removed"].append(name)
                self.rows.pop(name)
                self._items.pop(name, None)
        for name, reason in invalid.items():
            if name in self.devices or name in self._pending:
                self._remove(name)
            self.rows[name] = self._row_for_doc(report, name, INVALID, reason)

        to_build = [item for name, item in wanted.items() if name not in self.devices and name not in self._pending]
        changes["added"] = [i.name for i in to_build if i.name not in previously]

        # import every class once, up front (only from allowed_modules); what apstools
        # imports but a session does not use is imported at first use
        t0 = time.monotonic()
        with as_a_load_imports():
            classes, import_errors = import_classes([i.device_class for i in to_build], report.allowed_modules)
        for cls in classes.values():
            connection_requirements.restore(cls)   # a subclass waits for its first position too
        self.timings["import"] = time.monotonic() - t0
        # ophyd's initial metadata in bulk, not one blocking get at a time (issue 7)
        from . import bulk_metadata, exit_order, pyepics_copy, pyepics_gil, put_completion
        bulk_metadata.install()
        pyepics_gil.install()           # and two pyepics calls no longer give the GIL away
        pyepics_copy.install()          # a get reply is kept as a byte copy, not deepcopy'd
        put_completion.install()        # a put cut by a dying IOC is not a success
        exit_order.install()            # at exit, callbacks end before channels are cleared

        # one deadline for building and connecting everything
        t0 = time.monotonic()
        deadline = t0 + self._timeout()
        buildable = []
        for item in to_build:
            self._items[item.name] = item
            if item.device_class in import_errors:
                self._fail(item, IMPORT_FAILED, import_errors[item.device_class], 0.0)
            else:
                buildable.append(item)
        silent: dict[str, float] = {}       # no answer to their first PV's search
        built, construction_errors, unreachable, build_time = build_all(
            buildable, classes, deadline, after_build=_after_build,
            lazy=lazy, silent=silent)
        for name, reason in construction_errors.items():
            self._fail(self._items[name], CONSTRUCTION_FAILED, reason, build_time[name])
        self.timings["instantiate"] = time.monotonic() - t0

        t0 = time.monotonic()
        candidates = {**self._pending, **built}
        self._pending = {}
        connect_time: dict[str, float] = {}
        outcome = connect_all(candidates, max(deadline - t0, 0.0), times=connect_time,
                              configured_timeout=self._timeout(), searched_since=silent)
        for name, error in unreachable.items():
            outcome[name] = timed_out(self._timeout(), error)
        self.timings["connect"] = time.monotonic() - t0
        connected = {n: candidates[n] for n, err in outcome.items() if err is None}
        for name, err in outcome.items():
            if err is not None:
                if name in candidates:
                    self._pending[name] = candidates[name]
                self._fail(self._items[name], NOT_CONNECTED, err,
                           build_time.get(name, 0.0) + connect_time.get(name, 0.0))

        t0 = time.monotonic()
        actions, self.plugin_errors = available_actions()
        context = SetupContext(self.config["beamline"], self.config_path, self.config, connected)
        setup_cfg = {n: s for n, s in (self.config.get("setup") or {}).items() if n in connected}
        setup_time: dict[str, float] = {}
        unavailable = {e.name: f"plugin unusable: {e.reason}" for e in self.plugin_errors}
        setup_errors, exports = run_setups(connected, setup_cfg, actions, context, times=setup_time,
                                           unavailable=unavailable)
        self.timings["setup"] = time.monotonic() - t0

        for name, obj in connected.items():
            item = self._items[name]
            seconds = build_time.get(name, 0.0) + connect_time.get(name, 0.0) + setup_time.get(name, 0.0)
            if setup_errors.get(name):
                self._fail(item, SETUP_FAILED, setup_errors[name], seconds)
                _destroy(name, obj)        # rebuilt by the next reload
                continue
            self.devices[name] = obj
            self.rows[name] = DeviceStatus(name, item.device_class, list(item.labels or []), READY,
                                           seconds, None, getattr(item, "prefix", None))
            for export, export_obj in exports.get(name, {}).items():
                if export in wanted or export in self.devices:
                    logger.warning("%s exports %r, which is also a device name: not exported", name, export)
                    continue
                self.exports[export] = export_obj
                self.export_owner[export] = name

        if self.want_session and self.session is None:
            self._start_session(strict)
        self._publish()
        self.timings["total"] = time.monotonic() - t_start
        logger.info("beamline %s: %s", self.name, self.status().footer.splitlines()[0])
        if strict and (self.status().failed or self.session_error):
            raise BeamlineLoadError(f"beamline {self.name!r} did not load cleanly:\n{self.status()}", self)
        return changes

    def _start_session(self, strict: bool) -> None:
        from .session import build_session
        t0 = time.monotonic()
        try:
            build_session(self, self.config)
        except Exception as exc:
            self.session_error = f"{type(exc).__name__}: {exc}"
            logger.error("session of beamline %s failed: %s", self.name, self.session_error, exc_info=True)
        self.timings["session"] = time.monotonic() - t0

    def _fail(self, item, state: str, reason: str, seconds: float) -> None:
        logger.warning("%s: %s: %s", item.name, state, reason)
        self.rows[item.name] = DeviceStatus(item.name, item.device_class or "?", list(item.labels or []),
                                            state, seconds, reason, getattr(item, "prefix", None))

    @staticmethod
    def _row_for_doc(report: Report, name: str, state: str, reason: str) -> DeviceStatus:
        doc = next((d for d in report.database.docs.values() if isinstance(d, dict) and d.get("name") == name), {})
        labels = doc.get("labels") if isinstance(doc.get("labels"), list) else []
        return DeviceStatus(name, str(doc.get("device_class") or "?"), [str(x) for x in labels], state,
                            0.0, reason, doc.get("prefix") if isinstance(doc.get("prefix"), str) else None)

    def _publish(self) -> None:
        """Fill the caller's namespace (``namespace=globals()``)."""
        ns = self.namespace
        if ns is None:
            return
        ns.update(self._objects())
        for key in ("RE", "cat"):
            if getattr(self, key, None) is not None:
                ns[key] = getattr(self, key)
        ns.update(self.plans or {})

    def setup_again(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """Run the YAML's setup actions again on loaded devices (all, or ``names``):
        after an IOC restarted without autosave, its records are back at their
        defaults.  Returns device -> reason for each setup that failed (the device
        stays loaded)."""
        devices = {n: self.devices[n] for n in (names or list(self.devices)) if n in self.devices}
        actions, _ = available_actions()
        context = SetupContext(self.config["beamline"], self.config_path, self.config, devices)
        setup_cfg = {n: s for n, s in (self.config.get("setup") or {}).items() if n in devices}
        errors, exports = run_setups(devices, setup_cfg, actions, context)
        for name, exported in exports.items():
            for export, obj in exported.items():
                if self.export_owner.get(export) == name:
                    self.exports[export] = obj
        self._publish()
        return {name: reason for name, reason in errors.items() if reason}

    def reload(self, strict: bool = False) -> dict[str, list[str]]:
        """Pick up entries added, removed or edited in the happi database (and retry
        devices that failed) without restarting; returns what was added/removed/changed."""
        changes = None
        with gc_paused():
            try:
                changes = self._sync(strict=strict)
            finally:        # free the devices dropped (before the pause ends and freezes again)
                if changes is None or changes["removed"] or changes["changed"]:
                    collect_dropped()
        return changes


def load_beamline(name: str, labels: Iterable[str] | None = None,
                  namespace: MutableMapping[str, Any] | None = None, strict: bool = False,
                  config: str | Path | None = None, session: bool = True,
                  timeout: float | None = None) -> Beamline:
    """Load beamline ``name`` from its YAML and happi entries.

    ``labels`` loads a subset; ``namespace=globals()`` fills the caller's
    namespace; ``strict=True`` raises if anything fails; ``config`` is an explicit
    YAML path; ``session=False`` skips the RunEngine/catalog step; ``timeout``
    bounds the one connection wait (default: the YAML's epics.connection_timeout).
    """
    path = find_config(name, config)
    bl = Beamline(name, path, labels=labels, namespace=namespace, session=session, timeout=timeout)
    with gc_paused(collect_first=True):     # a beamline loaded before may have been dropped
        bl._sync(strict=strict)
    return bl
