"""An object made the first time it is used.

Why: some session objects cost an import a session start need not wait for
(issue 7): the databroker catalog (``bl.cat``, databroker's drivers, ~0.5 s)
and the BestEffortCallback (matplotlib, ~0.4 s).  Each stands in for its object
until the object is needed, then forwards to it.
"""
from __future__ import annotations

import threading
from typing import Any

_OWN_STATE = frozenset({"_made", "_made_lock"})


class MadeAtFirstUse:
    """Stands in for what :meth:`_make` returns: made once, under a lock, at the
    first :meth:`made` or the first attribute read the stand-in does not answer
    itself.  Dunder probes (copy, pickle, IPython's display) and the names in
    :attr:`_not_forwarded` make nothing."""

    #: attribute names answered "missing" by the stand-in instead of forwarded
    _not_forwarded: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self._made: Any = None
        self._made_lock = threading.Lock()

    def _make(self) -> Any:
        raise NotImplementedError

    def _not_made_repr(self) -> str:
        return f"<{type(self).__name__}, made at first use>"

    def made(self) -> Any:
        """The object (made now, if it was not yet)."""
        with self._made_lock:
            if self._made is None:
                self._made = self._make()
            return self._made

    @property
    def is_made(self) -> bool:
        return self._made is not None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in self._not_forwarded or attr in _OWN_STATE:
            raise AttributeError(attr)
        return getattr(self.made(), attr)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(dir(self.made())))

    def __repr__(self) -> str:
        return repr(self._made) if self._made is not None else self._not_made_repr()
