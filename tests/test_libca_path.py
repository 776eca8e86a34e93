"""ophyd's import points pyepics at epicscorelibs' libca without importing
setuptools (``loader/libca_path.py``, issue 7): the same library, 0.2 s less.

Each test runs in a fresh interpreter (``epics.ca`` is long imported in this one),
without ``PYEPICS_LIBCA`` unless the test sets it.
"""
import glob
import importlib.util
import os

from test_deferred_imports import run_fresh


def fresh_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYEPICS_LIBCA"}
    env.update(extra)
    return env


# what ophyd gets on its own: epicscorelibs' module, imported the usual way
PLAIN = """
import json, os, sys
import ophyd
from epics import ca
ca.initialize_libca()
print(json.dumps({"libca": ca.libca._name, "setuptools": "setuptools" in sys.modules}))
"""

POINTED = """
import json, os, sys, warnings
from loader.libca_path import point_pyepics_at_libca
from loader.deferred_imports import is_deferred
out = {"pointed": point_pyepics_at_libca()}
import ophyd
from epics import ca
ca.initialize_libca()
out.update(libca=ca.libca._name, variable=os.environ["PYEPICS_LIBCA"],
           setuptools=[m for m in ("setuptools", "pkg_resources", "setuptools_dso") if m in sys.modules],
           deferred=[m for m in ("epicscorelibs.path", "epicscorelibs.path.pyepics") if is_deferred(m)])
# first use, as a user would write it, after epics.ca: the real modules, no warning
with warnings.catch_warnings(record=True) as caught:
    from epicscorelibs.path import get_lib          # the package first
    import epicscorelibs
    out["module_named"] = (epicscorelibs.path.pyepics is sys.modules["epicscorelibs.path.pyepics"]
                           and is_deferred("epicscorelibs.path.pyepics"))
    import epicscorelibs.path.pyepics as pyepics_module
    out["get_lib"] = pyepics_module.get_lib("ca")
out["same_module"] = (epicscorelibs.path is sys.modules["epicscorelibs.path"]
                      and epicscorelibs.path.get_lib is get_lib
                      and epicscorelibs.path.pyepics is sys.modules["epicscorelibs.path.pyepics"])
out["real"] = [type(sys.modules[m]).__name__ for m in ("epicscorelibs.path", "epicscorelibs.path.pyepics")]
out["warnings"] = [str(w.message) for w in caught]
print(json.dumps(out))
"""


def test_ophyd_gets_the_same_libca_without_importing_setuptools():
    plain = run_fresh(PLAIN, env=fresh_env())
    assert plain["setuptools"] is True          # the cost the loader avoids (if this
    # fails, epicscorelibs no longer imports setuptools and libca_path can go)
    out = run_fresh(POINTED, env=fresh_env())
    assert out["pointed"] is True
    assert out["libca"] == out["variable"] == plain["libca"]
    assert out["setuptools"] == []
    assert out["deferred"] == ["epicscorelibs.path", "epicscorelibs.path.pyepics"]
    assert out["module_named"] is True
    assert out["get_lib"] == plain["libca"]
    assert out["same_module"] is True and out["real"] == ["module", "module"]
    assert out["warnings"] == []


CHOSEN = """
import json, os, sys
from loader.libca_path import point_pyepics_at_libca
out = {"pointed": point_pyepics_at_libca()}
from epics import ca
out.update(libca=ca.find_libca(), variable=os.environ["PYEPICS_LIBCA"])   # the file it would load
print(json.dumps(out))
"""


def test_a_libca_the_user_chose_is_kept():
    epics_dir = importlib.util.find_spec("epics").submodule_search_locations[0]
    bundled = sorted(glob.glob(os.path.join(epics_dir, "clibs", "*", "libca.so*")))
    assert bundled, "pyepics ships its own libca"
    out = run_fresh(CHOSEN, env=fresh_env(PYEPICS_LIBCA=bundled[0]))
    assert out == {"pointed": True, "libca": bundled[0], "variable": bundled[0]}


LATE = """
import json, sys
from epics import ca
from loader.libca_path import point_pyepics_at_libca
print(json.dumps({"pointed": point_pyepics_at_libca(), "stand_in": "epicscorelibs.path" in sys.modules}))
"""


def test_too_late_once_epics_ca_is_imported():
    assert run_fresh(LATE, env=fresh_env()) == {"pointed": False, "stand_in": False}
