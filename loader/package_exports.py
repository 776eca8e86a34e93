"""What a package's ``__init__`` takes from its own submodules, read without running it.

Why: apstools' ``apstools.devices`` and ``apstools.synApps`` are flat lists of
``from .swait import SwaitRecord``; running them imports ~50 device modules
(0.2 s) for the handful a beamline uses.  Knowing from the source which
submodule each name comes from, :mod:`loader.deferred_imports` imports only
that submodule when the name is asked for.

Only what is certain is reported: a name bound by a top-level ``from .sub import
name`` and by nothing else anywhere in the file (a later binding, or a
conditional one, would decide its value at import), and the submodules those
statements import, which the import system names on the package.  A star
import, which could bind anything, makes the answer empty.
"""
from __future__ import annotations

import ast
from collections import Counter
from typing import Optional

# name -> (module to import, attribute of it; None: the module itself)
Exports = dict[str, tuple[str, Optional[str]]]


def _bindings(tree: ast.AST) -> Counter | None:
    """How many statements bind each name anywhere in ``tree`` (None: a star import)."""
    bound: Counter = Counter()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                bound[(alias.asname or alias.name).partition(".")[0]] += 1
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound[node.id] += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound[node.name] += 1
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound[node.name] += 1
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
    return bound


def exports_from_submodules(source: str | bytes, package: str, filename: str = "<unknown>") -> Exports:
    """The names ``package``'s ``__init__`` (``source``) certainly takes from its
    submodules, each with the submodule it comes from."""
    tree = ast.parse(source, filename)
    bound = _bindings(tree)
    if bound is None:
        return {}
    exports: Exports = {}
    for node in tree.body:
        if not (isinstance(node, ast.ImportFrom) and node.level == 1 and node.module):
            continue
        submodule = node.module.partition(".")[0]
        if bound[submodule] == 0:        # named on the package by the import system
            exports[submodule] = (f"{package}.{submodule}", None)
        for alias in node.names:
            name = alias.asname or alias.name
            if bound[name] == 1:
                exports[name] = (f"{package}.{node.module}", alias.name)
    return exports


def read_exports(init_file: str, package: str) -> Exports:
    """:func:`exports_from_submodules` of the file ``init_file`` (empty if unreadable)."""
    try:
        with open(init_file, "rb") as f:
            return exports_from_submodules(f.read(), package, init_file)
    except (OSError, SyntaxError, ValueError):
        return {}
