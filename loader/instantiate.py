"""Build device objects from happi items (classes already imported, up front).

Arguments come from the entry's ``args``/``kwargs`` with ``{{field}}``
placeholders filled by :mod:`loader.templates` (never by a Jinja environment).
The happi item is attached as ``obj.md``, as happi's own loader does.
"""
from __future__ import annotations

from typing import Any

from . import templates


def render_arguments(item) -> tuple[list, dict]:
    """The constructor's ``(args, kwargs)`` for a happi item."""
    fields = item.post()
    args = templates.fill(list(item.args or []), fields)
    kwargs = templates.fill(dict(item.kwargs or {}), fields)
    return args, kwargs


def instantiate(item, cls) -> Any:
    """``cls(*args, **kwargs)`` for ``item``; the item is kept on the object as ``md``."""
    args, kwargs = render_arguments(item)
    obj = cls(*args, **kwargs)
    try:
        obj.md = item
    except Exception:   # objects that refuse attributes are still usable
        pass
    return obj
