"""The happi database of a beamline: where it is, its raw documents, and the
entries a load selects (``beamline``, ``active``, ``labels``).

Raw documents are read here (read only) so validation can point at JSON lines and
entry fields; selection goes through happi's own client and container.
"""
from __future__ import annotations

import configparser
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .problems import ConfigError, Problem

CONTAINER = "beamline.containers.BeamlineItem"


@dataclass
class Database:
    """A happi JSON database as stored: ``docs`` maps happi ``_id`` to the document."""

    path: Path
    docs: dict[str, dict] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)     # _id -> line of its key
    problems: list[Problem] = field(default_factory=list)


def json_path_from(happi_ref: str | os.PathLike, base_dir: Path) -> Path:
    """The JSON file behind the YAML's ``happi`` value: a ``.json`` database or a
    happi ``.cfg`` whose ``path`` names one (relative to the .cfg, as happi does)."""
    ref = Path(happi_ref).expanduser()
    ref = ref if ref.is_absolute() else (base_dir / ref)
    if ref.suffix != ".cfg":
        return ref.resolve()
    parser = configparser.ConfigParser()
    if not parser.read(ref):
        raise ConfigError([Problem(str(ref), "happi configuration file not found")])
    for section in [parser.default_section, *parser.sections()]:
        values = parser[section]
        if values.get("backend", "json") == "json" and values.get("path"):
            db = Path(values["path"]).expanduser()
            return (db if db.is_absolute() else ref.parent / db).resolve()
    raise ConfigError([Problem(str(ref), "no JSON backend 'path' in this happi configuration")])


def _pairs_keeping_duplicates(pairs):
    result: dict = {}
    dups = []
    for key, value in pairs:
        if key in result:
            dups.append(key)
        result[key] = value
    if dups:
        result["\0duplicates"] = dups
    return result


def _key_lines(text: str, keys: Iterable[str], every: bool = False) -> dict:
    """Line of each top-level ``"key":`` in the JSON text (first occurrence; with
    ``every``, the list of all its lines)."""
    lines: dict = {}
    wanted = set(keys)
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith('"'):
            key = stripped[1:].split('"', 1)[0]
            if key in wanted and line[: len(line) - len(line.lstrip())] in ("", " " * 4, " " * 2, "\t"):
                if every:
                    lines.setdefault(key, []).append(number)
                elif key not in lines:
                    lines[key] = number
    return lines


def read_database(path: str | os.PathLike) -> Database:
    """Parse the JSON database; syntax errors become problems with line and column."""
    path = Path(path)
    db = Database(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        db.problems.append(Problem(str(path), f"cannot read happi database: {exc.strerror or exc}"))
        return db
    if not text.strip():
        return db          # happi treats an empty file as an empty database
    try:
        raw = json.loads(text, object_pairs_hook=_pairs_keeping_duplicates)
    except json.JSONDecodeError as exc:
        db.problems.append(Problem(str(path), f"JSON syntax error: {exc.msg}",
                                   line=exc.lineno, column=exc.colno))
        return db
    if not isinstance(raw, dict):
        db.problems.append(Problem(str(path), "a happi JSON database must be an object "
                                   f"mapping ids to entries, not {type(raw).__name__}", line=1))
        return db
    for dup in raw.pop("\0duplicates", []):
        lines = _key_lines(text, [dup], every=True).get(dup, [])
        db.problems.append(Problem(str(path), f"entry id {dup!r} appears more than once"
                                   + (f" (lines {', '.join(map(str, lines))})" if len(lines) > 1 else "")
                                   + "; JSON keeps only the last", scope="entry",
                                   line=lines[-1] if lines else None, device=dup))
    for value in raw.values():
        if isinstance(value, dict):
            value.pop("\0duplicates", None)
    db.docs = raw
    db.lines = _key_lines(text, raw.keys())
    return db


def select_items(docs: dict[str, dict], beamline: str, labels: Iterable[str] | None = None,
                 skip: Iterable[str] = ()) -> list:
    """Active entries of ``beamline`` (with any of ``labels``, when given), as happi items.

    ``docs`` are the database's documents (already validated); ``skip`` names the
    entries validation rejected, which are never turned into items.
    """
    from .deferred_imports import defer
    defer(["happi"])    # happi's containers and items, without happi's client and backends
    from happi.containers import registry
    wanted = set(labels) if labels else None
    skipped = set(skip)
    items = []
    for doc in docs.values():
        if not isinstance(doc, dict) or doc.get("beamline") != beamline:
            continue
        if doc.get("name") in skipped or not doc.get("active", True):
            continue
        if wanted is not None and not wanted.intersection(doc.get("labels") or []):
            continue
        container = registry[doc.get("type", CONTAINER)]
        items.append(container(**{k: v for k, v in doc.items() if k != "type"}))
    return sorted(items, key=lambda i: _natural_key(i.name))


def _natural_key(name: str):
    """m2 before m10."""
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
