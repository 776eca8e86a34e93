"""One problem found in the beamline's data, with the place to fix it.

Validation collects these instead of raising, so every problem is reported at
once; the loader then decides what each one costs (see ``Problem.scope``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

#: What a problem blocks when loading (``beamline validate`` fails on all of them):
#: ``config``  the YAML or the database as a whole: nothing can be loaded;
#: ``entry``   one happi entry: that device is left out;
#: ``setup``   one device's setup: the device loads, that setup is skipped;
#: ``advice``  suspicious but loadable (e.g. two entries on the same PVs).
SCOPES = ("config", "entry", "setup", "advice")


@dataclass(frozen=True)
class Problem:
    """A problem with a file, located by line (YAML/JSON) or by entry and field (happi)."""

    file: str
    message: str
    scope: str = "config"
    line: int | None = None
    column: int | None = None
    path: str | None = None      # "setup.m1[0].srev" (YAML) or the field of an entry (JSON)
    device: str | None = None    # the happi entry / device the problem is confined to

    def location(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.device is not None and self.scope in ("entry", "advice"):
            where += f": entry {self.device!r}"
            if self.path:
                where += f", field {self.path!r}"
        elif self.path:
            where += f": {self.path}"
        return where

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"


def format_problems(problems: Iterable[Problem]) -> str:
    """One line per problem, in file order."""
    ordered = sorted(problems, key=lambda p: (p.file, p.line or 0, p.device or "", p.path or ""))
    return "\n".join(str(p) for p in ordered)


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` says every reason at once."""

    def __init__(self, problems: list[Problem], headline: str = "invalid beamline configuration"):
        self.problems = list(problems)
        super().__init__(f"{headline}:\n{format_problems(self.problems)}")
