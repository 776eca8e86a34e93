"""Build device objects from happi items (classes already imported, up front).

Arguments come from the entry's ``args``/``kwargs`` with ``{{field}}``
placeholders filled by :mod:`loader.templates` (never by a Jinja environment).
The happi item is attached as ``obj.md``, as happi's own loader does.
"""
from __future__ import annotations

from typing import Any

from . import templates

RETRY_INTERVAL = 0.5    # seconds between attempts of a constructor that timed out


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


def instantiate_until(item, cls, deadline: float) -> tuple[Any, str | None]:
    """Retry a constructor that reads PVs (``ScalerCH`` reads its channel names) until
    it succeeds or ``deadline`` (``time.monotonic()``) passes: (object or None, error)."""
    import time
    error = "constructor could not read its PVs"
    while True:
        try:
            return instantiate(item, cls), None
        except TimeoutError as exc:
            error = f"{type(exc).__name__}: {exc}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, error
            # rate limit: building a large device is CPU work that would starve the other connections
            time.sleep(min(RETRY_INTERVAL, remaining))
        except Exception as exc:
            return None, f"construction failed: {type(exc).__name__}: {exc}"
