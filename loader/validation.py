"""Check a beamline's YAML and happi database and report every problem at once.

Schemas (JSON Schema, in ``instrument_config/``) check shapes and types; the
cross-checks here check what a schema cannot: names, prefixes, classes (imported
only from ``allowed_modules``), setup actions, labels, templates.  Validation
only reads: no file is ever written.
"""
from __future__ import annotations

import difflib
import json
import keyword
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from . import templates
from .classes import DEFAULT_ALLOWED_MODULES, as_a_load_imports, import_class, refusal
from .config import CHECKOUT_CONFIG_DIR, YamlDocument, dotted, find_config, read_yaml
from .happi_db import Database, json_path_from, read_database
from .plugins import CALLBACKS, SETUPS, group_entry_points, load_group, must_be_callable, rescan_entry_points
from .problems import ConfigError, Problem

CONFIG_SCHEMA = "beamline.schema.json"
ENTRY_SCHEMA = "happi_entry.schema.json"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A schema shipped in the checkout's ``instrument_config/`` (the format the code reads)."""
    return json.loads((CHECKOUT_CONFIG_DIR / name).read_text(encoding="utf-8"))


def _validator(schema: dict):
    import jsonschema
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


@dataclass
class Report:
    """Everything validation read, and every problem it found."""

    config_path: Path
    config: dict | None = None
    yaml: YamlDocument | None = None
    database: Database | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def of_scope(self, scope: str) -> list[Problem]:
        return [p for p in self.problems if p.scope == scope]

    def entry_reasons(self) -> dict[str, list[str]]:
        """Entry name -> why it cannot be loaded."""
        reasons: dict[str, list[str]] = defaultdict(list)
        for p in self.of_scope("entry"):
            if p.device is not None:
                reasons[p.device].append(f"{p.path + ': ' if p.path else ''}{p.message}")
        return dict(reasons)

    def setup_reasons(self) -> dict[str, list[str]]:
        reasons: dict[str, list[str]] = defaultdict(list)
        for p in self.of_scope("setup"):
            if p.device is not None:
                reasons[p.device].append(p.message)
        return dict(reasons)

    @property
    def beamline(self) -> str | None:
        return (self.config or {}).get("beamline")

    @property
    def allowed_modules(self) -> list[str]:
        allowed = (self.config or {}).get("allowed_modules")
        if not isinstance(allowed, list) or not all(isinstance(m, str) for m in allowed):
            return list(DEFAULT_ALLOWED_MODULES)      # a malformed list is reported by the schema
        return allowed


# -- messages ----------------------------------------------------------------

_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean",
               int: "integer", float: "number", type(None): "null"}


def _type_name(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _explain(error) -> list[tuple[tuple, str]]:
    """(location keys, message) for one jsonschema error; unknown keys get a suggestion each."""
    keys = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    desc = schema.get("description")
    if error.validator == "additionalProperties" and schema.get("additionalProperties") is False:
        known = list(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in schema.get("properties", {})]
        return [(keys + (k,), f"unknown key {k!r}{_suggest(k, known)}; expected one of: "
                 + ", ".join(known)) for k in extras]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(keys, f"missing required key {missing!r}")]
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        message = (f"expected {' or '.join(wanted)}, got {_type_name(error.instance)} "
                   f"{error.instance!r}")
    elif error.validator in ("const", "enum"):
        message = f"expected {error.validator_value!r}, got {error.instance!r}"
    elif error.validator == "pattern":
        message = f"{error.instance!r} is not valid"
    elif error.validator == "propertyNames":
        message = f"{error.instance!r}: {error.message}"
    else:
        message = error.message
    if desc:
        message += f" (expected {desc})"
    return [(keys, message)]


# -- the YAML ----------------------------------------------------------------

def check_config_schema(doc: YamlDocument) -> list[Problem]:
    if not isinstance(doc.data, dict):
        return [Problem(str(doc.path), f"expected a mapping of keys (beamline, happi, ...), "
                        f"got {_type_name(doc.data)}", line=doc.line_of(()) or 1)]
    problems = []
    for error in sorted(_validator(load_schema(CONFIG_SCHEMA)).iter_errors(doc.data),
                        key=lambda e: list(map(str, e.absolute_path))):
        for keys, message in _explain(error):
            problems.append(Problem(str(doc.path), message, line=doc.line_of(keys), path=dotted(keys)))
    return problems


# -- the happi database -------------------------------------------------------

def check_entries(db: Database) -> list[Problem]:
    """Schema, id, name and template problems of every entry (all beamlines)."""
    problems: list[Problem] = []
    schema = load_schema(ENTRY_SCHEMA)
    validator = _validator(schema)
    known_fields = tuple(schema["properties"])
    where = str(db.path)
    names: dict[str, str] = {}
    for _id, doc in db.docs.items():
        line = db.lines.get(_id)
        label = doc.get("name", _id) if isinstance(doc, dict) else _id
        if not isinstance(doc, dict):
            problems.append(Problem(where, f"expected an object, got {_type_name(doc)}",
                                    scope="entry", line=line, device=str(label)))
            continue

        def add(message, field_=None, scope="entry"):
            problems.append(Problem(where, message, scope=scope, line=line, path=field_, device=str(label)))

        for error in validator.iter_errors(doc):
            for keys, message in _explain(error):
                add(message, dotted(keys) if keys else None)
        name = doc.get("name")
        if isinstance(name, str):
            if keyword.iskeyword(name):
                add(f"{name!r} is a Python keyword, not usable as a name", "name")
            if name != _id:
                add(f"name {name!r} differs from the entry's id {_id!r} (happi keys entries by name)", "name")
            if name in names:
                add(f"duplicate name {name!r} (also entry id {names[name]!r})", "name")
            names.setdefault(name, _id)
        for extra in doc:
            if extra not in known_fields:
                hint = _suggest(extra, known_fields)
                if hint:
                    add(f"unknown field {extra!r}{hint}; happi would keep it as extra metadata", extra)
        for key in ("args", "kwargs"):
            value = doc.get(key)
            if isinstance(value, (list, dict)):
                for message in templates.check_value(value, doc):
                    add(message, key)
    return problems


def check_beamline(report: Report, labels: Iterable[str] | None = None,
                   import_classes: bool = True) -> list[Problem]:
    """Cross-checks between the YAML and this beamline's entries."""
    config, doc, db = report.config, report.yaml, report.database
    assert config is not None and doc is not None and db is not None
    beamline = config.get("beamline")
    yaml_file, db_file = str(doc.path), str(db.path)
    problems: list[Problem] = []
    entries = {d.get("name"): d for d in db.docs.values()
               if isinstance(d, dict) and d.get("beamline") == beamline and isinstance(d.get("name"), str)}
    active = {n: d for n, d in entries.items() if d.get("active", True) is not False}
    if not active:
        problems.append(Problem(db_file, f"no active entries with beamline {beamline!r}"))

    # the same class on the same prefix twice is almost always a copy-paste slip
    by_target: dict[tuple, list[str]] = defaultdict(list)
    for name, d in active.items():
        if d.get("prefix"):
            by_target[(d.get("device_class"), d.get("prefix"))].append(name)
    for (cls, prefix), names in by_target.items():
        for name in names[1:]:
            problems.append(Problem(db_file, f"same device_class and prefix {prefix!r} as entry "
                                    f"{names[0]!r} (duplicate prefix)", scope="advice",
                                    line=db.lines.get(name), path="prefix", device=name))

    allowed = report.allowed_modules
    with as_a_load_imports() if import_classes else nullcontext():
        for name, d in active.items():
            path = d.get("device_class")
            if not isinstance(path, str):
                continue
            reason = refusal(path, allowed)
            if reason is None and import_classes:
                try:
                    import_class(path, allowed)
                except Exception as exc:
                    reason = f"unknown class: {exc}" if isinstance(exc, (ImportError, AttributeError)) else \
                        f"device_class {path!r}: import failed: {type(exc).__name__}: {exc}"
            if reason:
                problems.append(Problem(db_file, reason, scope="entry", line=db.lines.get(name),
                                        path="device_class", device=name))

    # labels: the YAML's, then the caller's
    in_use = sorted({lab for d in active.values() for lab in (d.get("labels") or []) if isinstance(lab, str)})
    for i, label in enumerate(((config.get("load") or {}).get("labels") or [])):
        if label not in in_use:
            problems.append(Problem(yaml_file, f"no entry of beamline {beamline!r} has label {label!r}"
                                    f"{_suggest(label, in_use)}; labels in use: {', '.join(in_use)}",
                                    line=doc.line_of(("load", "labels", i)), path=f"load.labels[{i}]"))
    for i, name in enumerate(((config.get("load") or {}).get("lazy") or [])):
        if name not in entries:
            problems.append(Problem(yaml_file, f"load.lazy names {name!r}, which is not a device of beamline "
                                    f"{beamline!r}{_suggest(name, entries)}", scope="advice",
                                    line=doc.line_of(("load", "lazy", i)), path=f"load.lazy[{i}]"))
    for label in labels or []:
        if label not in in_use:
            problems.append(Problem(yaml_file, f"no entry of beamline {beamline!r} has label {label!r}"
                                    f"{_suggest(label, in_use)}; labels in use: {', '.join(in_use)}",
                                    path="labels (argument)"))

    # session references: the session reports these too, so they do not stop a load
    problems += check_session_names(config, doc)

    # setup actions
    actions, broken = load_group(SETUPS, must_be_callable)
    broken_by_name = {b.name: b for b in broken}
    for device, steps in (config.get("setup") or {}).items():
        if not isinstance(steps, list):
            continue
        if device not in entries:
            problems.append(Problem(yaml_file, f"setup for {device!r}, which is not a device of beamline "
                                    f"{beamline!r}{_suggest(device, entries)}", scope="setup",
                                    line=doc.line_of(("setup", device)), path=f"setup.{device}", device=device))
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("action"), str):
                continue
            keys = ("setup", device, i)
            name = step["action"]
            if name in broken_by_name:
                message = f"setup action {name!r} is installed but unusable: {broken_by_name[name].reason}"
            elif name not in actions:
                message = f"unknown setup action {name!r}{_suggest(name, actions)}; known: {', '.join(sorted(actions))}"
            else:
                message = None
                for opt_keys, opt_message in check_action_options(actions[name], step):
                    problems.append(Problem(yaml_file, f"{name}: {opt_message}", scope="setup",
                                            line=doc.line_of(keys + opt_keys), path=dotted(keys + opt_keys),
                                            device=device))
            if message:
                problems.append(Problem(yaml_file, message, scope="setup", line=doc.line_of(keys + ("action",)),
                                        path=dotted(keys + ("action",)), device=device))
    return problems


def check_session_names(config: dict, doc: YamlDocument) -> list[Problem]:
    """``catalog`` must be declared in ``catalogs/``; callbacks must be entry points."""
    from .catalogs import CATALOG_DIR, declared_sources
    problems = []
    catalog = config.get("catalog")
    if isinstance(catalog, str):
        known = declared_sources()
        if catalog not in known:
            problems.append(Problem(str(doc.path), f"unknown catalog {catalog!r}{_suggest(catalog, known)}; "
                                    f"catalogs declared in {CATALOG_DIR}: {', '.join(sorted(known))}",
                                    scope="advice", line=doc.line_of(("catalog",)), path="catalog"))
    names = {ep.name for ep in group_entry_points(CALLBACKS)}
    wanted = [s.get("name") for s in config.get("callbacks") or [] if isinstance(s, dict)]
    broken = {}
    if any(isinstance(n, str) and n in names for n in wanted):
        broken = {e.name: e for e in load_group(CALLBACKS, must_be_callable)[1]}
    for i, spec in enumerate(config.get("callbacks") or []):
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and name in broken and spec.get("enabled", True) is not False:
            problems.append(Problem(str(doc.path), f"callback {name!r} is installed but unusable: "
                                    f"{broken[name].reason}", scope="advice",
                                    line=doc.line_of(("callbacks", i, "name")), path=f"callbacks[{i}].name"))
        elif isinstance(name, str) and name not in names:
            problems.append(Problem(str(doc.path), f"unknown callback {name!r}{_suggest(name, names)}; "
                                    f"known: {', '.join(sorted(names))}", scope="advice",
                                    line=doc.line_of(("callbacks", i, "name")), path=f"callbacks[{i}].name"))
    return problems


def _json_keys(value):
    """YAML mappings may have integer keys (channel numbers); JSON Schema wants strings."""
    if isinstance(value, dict):
        return {str(k): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def check_action_options(action, step: dict) -> list[tuple[tuple, str]]:
    """Problems with one setup step's options, against the action's ``options_schema``."""
    schema = getattr(action, "options_schema", None)
    if not schema:
        return []
    options = {k: v for k, v in step.items() if k != "action"}
    found = []
    for error in _validator(schema).iter_errors(_json_keys(options)):
        for keys, message in _explain(error):
            if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
                keys = keys + (error.instance,)          # the offending key itself has a line
            found.append((_original_keys(options, keys), message))
    return found


def _original_keys(value: Any, keys: tuple) -> tuple:
    """``keys`` (strings, as JSON Schema saw them) back to the YAML's own keys (e.g. ints),
    so the line of a channel number can be found."""
    result = []
    for key in keys:
        if isinstance(value, dict):
            original = next((k for k in value if str(k) == str(key)), key)
            result.append(original)
            value = value.get(original)
        else:
            result.append(key)
            value = value[key] if isinstance(value, list) and isinstance(key, int) and key < len(value) else None
    return tuple(result)


# -- everything ---------------------------------------------------------------

def validate(name: str | None = None, config: str | Path | None = None,
             labels: Iterable[str] | None = None, import_classes: bool = True) -> Report:
    """Validate the beamline ``name`` (or the YAML file ``config``); never raises for bad data."""
    path = find_config(name or "", config) if (config or name) else None
    if path is None:
        raise ValueError("give a beamline name or a config path")
    rescan_entry_points()      # plugins installed since the last check (or load) are seen
    report = Report(path)
    try:
        report.yaml = read_yaml(path)
    except ConfigError as exc:
        report.problems += exc.problems
        return report
    report.problems += report.yaml.problems
    report.problems += check_config_schema(report.yaml)
    data = report.yaml.data if isinstance(report.yaml.data, dict) else {}
    report.config = data
    if name and not config and data.get("beamline") not in (None, name):
        report.problems.append(Problem(str(path), f"file is named for {name!r} but declares beamline "
                                       f"{data.get('beamline')!r}", line=report.yaml.line_of(("beamline",))))
    happi_ref = data.get("happi")
    if not isinstance(happi_ref, str):
        return report
    try:
        db_path = json_path_from(happi_ref, path.parent)
    except ConfigError as exc:
        report.problems += exc.problems
        return report
    report.database = read_database(db_path)
    report.problems += report.database.problems
    if report.database.problems and not report.database.docs:
        return report
    report.problems += check_entries(report.database)
    if isinstance(data.get("beamline"), str):
        report.problems += check_beamline(report, labels=labels, import_classes=import_classes)
    return report
