"""Find a beamline's YAML file and read it, keeping the line of every value.

Search order (DESIGN.md §3): an explicit path, else ``$BEAMLINE_CONFIG_PATH``
(directories or files, separated by ``os.pathsep``), else ``./instrument_config/``,
else the checkout's ``instrument_config/``.  YAML is read with ``yaml.SafeLoader``
only: a configuration file can never construct Python objects.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .problems import ConfigError, Problem

CONFIG_ENV = "BEAMLINE_CONFIG_PATH"
CHECKOUT = Path(__file__).resolve().parent.parent
CHECKOUT_CONFIG_DIR = CHECKOUT / "instrument_config"
SUFFIXES = (".yml", ".yaml")


class ConfigNotFound(FileNotFoundError):
    """No YAML file for the beamline in any searched place."""


def search_dirs() -> list[Path]:
    """Where ``find_config`` looks, in order (files listed in the variable count too)."""
    places: list[Path] = []
    for part in os.environ.get(CONFIG_ENV, "").split(os.pathsep):
        if part.strip():
            places.append(Path(part.strip()).expanduser())
    places.append(Path.cwd() / "instrument_config")
    places.append(CHECKOUT_CONFIG_DIR)
    unique: list[Path] = []
    for place in places:
        if place not in unique:
            unique.append(place)
    return unique


def looks_like_path(name: str | os.PathLike) -> bool:
    text = os.fspath(name)
    return text.endswith(SUFFIXES) or os.sep in text or "/" in text


def find_config(name: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """The YAML file for beamline ``name`` (or ``path``/``name`` itself when it is a file)."""
    if path is not None:
        explicit = Path(path).expanduser()
        if explicit.is_file():
            return explicit.resolve()
        raise ConfigNotFound(f"beamline configuration file not found: {explicit}")
    if looks_like_path(name):
        explicit = Path(name).expanduser()
        if explicit.is_file():
            return explicit.resolve()
        raise ConfigNotFound(f"beamline configuration file not found: {explicit}")
    searched = []
    for place in search_dirs():
        if place.is_file():
            if place.stem == name and place.suffix in SUFFIXES:
                return place.resolve()
            searched.append(str(place))
            continue
        for suffix in SUFFIXES:
            candidate = place / f"{name}{suffix}"
            if candidate.is_file():
                return candidate.resolve()
        searched.append(str(place))
    raise ConfigNotFound(f"no configuration for beamline {name!r}; looked for {name}.yml in: "
                         + ", ".join(searched) + f" (set ${CONFIG_ENV} or pass config=...)")


def all_configs() -> list[Path]:
    """Every beamline YAML in the search path (first one found wins per name)."""
    found: dict[str, Path] = {}
    for place in search_dirs():
        files = [place] if place.is_file() else sorted(
            p for p in place.glob("*") if p.suffix in SUFFIXES) if place.is_dir() else []
        for f in files:
            found.setdefault(f.stem, f.resolve())
    return list(found.values())


@dataclass
class YamlDocument:
    """A parsed YAML file: plain data plus the line of every key and item."""

    path: Path
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, keys) -> int | None:
        """Line of the value at ``keys`` (or of its nearest ancestor that has one)."""
        keys = tuple(keys)
        while keys:
            if keys in self.lines:
                return self.lines[keys]
            keys = keys[:-1]
        return self.lines.get((), None)


def dotted(keys) -> str:
    """``("setup", "m1", 0, "srev")`` -> ``setup.m1[0].srev``."""
    text = ""
    for key in keys:
        if isinstance(key, int):
            text += f"[{key}]"
        else:
            text += ("." if text else "") + str(key)
    return text or "(top level)"


def _record_lines(node: yaml.Node, keys: tuple, lines: dict, duplicates: list) -> None:
    lines.setdefault(keys, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag.endswith(":int"):
                try:
                    key = int(key)
                except ValueError:
                    pass
            if key in seen:
                duplicates.append((keys + (key,), key_node.start_mark.line + 1, seen[key]))
            seen[key] = key_node.start_mark.line + 1
            lines[keys + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, keys + (key,), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[keys + (index,)] = item.start_mark.line + 1
            _record_lines(item, keys + (index,), lines, duplicates)


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse ``text`` safely; a syntax error becomes a ``ConfigError`` with line and column."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = Problem(str(path), f"YAML tag refused: {exc.problem}; beamline configuration is read "
                          "with a safe loader (plain YAML data only: no Python objects, nothing is run)",
                          line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None)
        raise ConfigError([problem], "cannot read the beamline configuration") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        problem = Problem(str(path), f"YAML syntax error: {exc.problem or exc}"
                          + (f" ({context})" if context else ""),
                          line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None)
        raise ConfigError([problem], "cannot read the beamline configuration") from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    doc = YamlDocument(path, data)
    if node is not None:
        duplicates: list = []
        _record_lines(node, (), doc.lines, duplicates)
        for keys, line, first in duplicates:
            doc.problems.append(Problem(str(path), f"duplicate key {keys[-1]!r} (first at line {first}); "
                                        "YAML keeps only the last one", line=line, path=dotted(keys)))
    return doc


def read_yaml(path: str | os.PathLike) -> YamlDocument:
    """Read and parse one YAML file (read only: never written)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read file: {exc.strerror or exc}")]) from None
    return parse_yaml(text, path)


def resolve_relative(base_file: Path, value: str | os.PathLike) -> Path:
    """A path from the YAML, relative to the YAML file's directory unless absolute."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_file.parent / p).resolve()
