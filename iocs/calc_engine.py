"""EPICS CALC expressions evaluated by EPICS's own engine (libCom ``postfix``/``calcPerform``).

The simulated records must compute exactly what a real IOC computes (``RNDM``,
``max``/``min``, ``^``, case-insensitive input letters, ``?:``, ...), so rather
than parse expressions in Python we load libCom from the ``epicscorelibs`` wheel
with ctypes.  An expression is compiled once (:class:`CalcExpression`) and
evaluated many times.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTU"
#: calcPerform reads and may write (``A:=...``) this many arguments (A..U in EPICS 7)
NARGS = 21

_INCOMPLETE = {6, 7, 8}   # CALC_ERR_PAREN_OPEN, CONDITIONAL, INCOMPLETE: a prefix may still grow


class CalcError(ValueError):
    """A CALC expression that libCom refuses, with the character where it goes wrong."""

    def __init__(self, expression: str, reason: str, position: int):
        self.expression, self.reason, self.position = expression, reason, position
        pointer = " " * position + "^"
        super().__init__(f"bad CALC expression at position {position}: {reason}\n"
                         f"  {expression}\n  {pointer}")


@functools.lru_cache(maxsize=1)
def _libcom() -> ctypes.CDLL:
    from epicscorelibs.path import get_lib

    lib = ctypes.CDLL(get_lib("Com"))
    lib.postfix.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_short)]
    lib.postfix.restype = ctypes.c_long
    lib.calcPerform.argtypes = [ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double),
                                ctypes.c_char_p]
    lib.calcPerform.restype = ctypes.c_long
    lib.calcErrorStr.argtypes = [ctypes.c_short]
    lib.calcErrorStr.restype = ctypes.c_char_p
    lib.calcArgUsage.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_ulong),
                                 ctypes.POINTER(ctypes.c_ulong)]
    lib.calcArgUsage.restype = ctypes.c_long
    return lib


def _postfix(expression: bytes) -> tuple[ctypes.Array | None, int]:
    """Compile; return (postfix buffer, 0) or (None, libCom error number)."""
    lib = _libcom()
    buffer = ctypes.create_string_buffer(len(expression) * 4 + 64)  # > INFIX_TO_POSTFIX_SIZE
    error = ctypes.c_short(0)
    if lib.postfix(expression, buffer, ctypes.byref(error)) != 0:
        return None, error.value or 11
    return buffer, 0


def _error_position(expression: bytes) -> int:
    """Index of the first character after which no prefix compiles (or could still grow)."""
    viable = 0
    for end in range(1, len(expression) + 1):
        buffer, error = _postfix(expression[:end])
        if buffer is not None or error in _INCOMPLETE:
            viable = end
    return min(viable, len(expression))


class CalcExpression:
    """One compiled CALC expression; :meth:`evaluate` it with the record's inputs."""

    def __init__(self, expression: str):
        self.expression = expression
        raw = expression.encode("latin-1")
        if not raw.strip():
            raise CalcError(expression, "empty expression", 0)
        buffer, error = _postfix(raw)
        if buffer is None:
            reason = _libcom().calcErrorStr(error).decode("latin-1", "replace")
            raise CalcError(expression, reason, _error_position(raw))
        self._postfix = buffer
        inputs, stores = ctypes.c_ulong(0), ctypes.c_ulong(0)
        _libcom().calcArgUsage(buffer, ctypes.byref(inputs), ctypes.byref(stores))
        #: letters the expression reads and assigns (``A:=...``)
        self.inputs = frozenset(c for i, c in enumerate(LETTERS) if inputs.value >> i & 1)
        self.stores = frozenset(c for i, c in enumerate(LETTERS) if stores.value >> i & 1)

    def evaluate(self, args: Sequence[float] = ()) -> float:
        """Value for inputs ``args`` (A, B, ... in order); NaN when libCom fails."""
        values = (ctypes.c_double * NARGS)(*[float(a) for a in list(args)[:NARGS]])
        result = ctypes.c_double(0.0)
        if _libcom().calcPerform(values, ctypes.byref(result), self._postfix) != 0:
            return float("nan")
        return result.value

    def __repr__(self) -> str:
        return f"CalcExpression({self.expression!r})"


def evaluate(expression: str, args: Sequence[float] = ()) -> float:
    """Compile and evaluate once (for tests and one-off use)."""
    return CalcExpression(expression).evaluate(args)
