"""``{{field}}`` substitution in happi ``args``/``kwargs``, and nothing more.

happi renders these strings with a full Jinja2 environment, where an edited JSON
file could reach Python objects through expressions.  Here a template may only
name a field of its own entry (``{{prefix}}``, ``{{name}}``, ``{{labels}}``): any
other ``{{ }}``, ``{% %}`` or ``{# #}`` is refused, so JSON can never run code.
A value that is exactly one placeholder keeps the field's type (as in happi).
"""
from __future__ import annotations

import re
from typing import Any, Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ANY_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


class TemplateError(ValueError):
    """A template that is not a plain ``{{field}}`` substitution, or names a missing field."""


def template_fields(text: str) -> list[str]:
    """The fields ``text`` refers to; ``TemplateError`` if it holds anything else."""
    remainder = PLACEHOLDER.sub("", text)
    if ANY_JINJA.search(remainder):
        raise TemplateError(f"{text!r}: only plain {{{{field}}}} placeholders are allowed "
                            "(no expressions, filters, attributes or blocks)")
    return PLACEHOLDER.findall(text)


def check_value(value: Any, fields: Mapping[str, Any]) -> list[str]:
    """Every problem with the templates inside ``value`` (lists/dicts walked)."""
    problems: list[str] = []
    if isinstance(value, str):
        try:
            for name in template_fields(value):
                if name not in fields or fields[name] is None:
                    problems.append(f"{value!r} names field {name!r}, which this entry does not set")
        except TemplateError as exc:
            problems.append(str(exc))
    elif isinstance(value, list):
        for v in value:
            problems += check_value(v, fields)
    elif isinstance(value, dict):
        for v in value.values():
            problems += check_value(v, fields)
    return problems


def fill(value: Any, fields: Mapping[str, Any]) -> Any:
    """``value`` with every placeholder replaced by the entry's field value."""
    if isinstance(value, list):
        return [fill(v, fields) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, fields) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    names = template_fields(value)
    for name in names:
        if name not in fields or fields[name] is None:
            raise TemplateError(f"{value!r} names field {name!r}, which this entry does not set")
    whole = PLACEHOLDER.fullmatch(value.strip())
    if whole:
        return fields[whole.group(1)]
    return PLACEHOLDER.sub(lambda m: str(fields[m.group(1)]), value)
