"""``loader.import_hooks.after_import``: a function runs on a module right after it has
been imported, without importing it, and the import system is left as it was."""
from __future__ import annotations

import importlib
import sys

import pytest

from loader import import_hooks


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``hooked_pkg`` with a module ``mod`` (``VALUE = 1``) on ``sys.path``."""
    root = tmp_path / "hooked_pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [n for n in sys.modules if n.startswith("hooked_pkg")]:
        del sys.modules[name]


def test_the_function_runs_after_the_module_is_imported_not_before(package):
    seen = []
    import_hooks.after_import("hooked_pkg.mod", lambda module: seen.append(module.VALUE))
    assert "hooked_pkg.mod" not in sys.modules and seen == []      # nothing imported
    import hooked_pkg.mod
    assert seen == [1]
    assert type(hooked_pkg.mod.__loader__).__name__ == "SourceFileLoader"   # its own loader back
    assert hooked_pkg.mod.__spec__.loader is hooked_pkg.mod.__loader__
    assert not import_hooks.waiting("hooked_pkg.mod")
    assert (import_hooks._finder in sys.meta_path) == bool(import_hooks._waiting)   # gone when idle
    importlib.reload(hooked_pkg.mod)
    assert seen == [1]                                               # once


def test_an_imported_module_gets_the_function_at_once(package):
    import hooked_pkg.mod
    seen = []
    import_hooks.after_import("hooked_pkg.mod", lambda module: seen.append(module))
    assert seen == [hooked_pkg.mod]


def test_a_failed_import_keeps_the_function_for_the_next_attempt(package):
    (package / "mod.py").write_text("raise RuntimeError('not today')\n")
    seen = []
    import_hooks.after_import("hooked_pkg.mod", lambda module: seen.append(module.VALUE))
    with pytest.raises(RuntimeError, match="not today"):
        importlib.import_module("hooked_pkg.mod")
    assert seen == [] and import_hooks.waiting("hooked_pkg.mod")
    (package / "mod.py").write_text("VALUE = 2\n")
    importlib.invalidate_caches()
    sys.modules.pop("hooked_pkg.mod", None)
    importlib.import_module("hooked_pkg.mod")
    assert seen == [2] and not import_hooks.waiting("hooked_pkg.mod")
