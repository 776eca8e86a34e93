"""Point pyepics at epicscorelibs' libca without importing setuptools.

Why: ophyd imports ``epicscorelibs.path.pyepics`` for one side effect: it sets
``PYEPICS_LIBCA`` (unless set already) to epicscorelibs' libca.  Its package,
``epicscorelibs.path``, imports ``setuptools_dso``, whose ``__init__`` imports
all of setuptools and pkg_resources, and finds the library by walking the call
stack twice with ``inspect.stack()``: about 0.2 s of every load (issue 7), for a
file name.

How: the same file name comes from the module epicscorelibs generated to describe
its libca (``epicscorelibs.lib.ca_dsoinfo``, which imports only ``os``); the
variable is set from it as that module would set it, and ``epicscorelibs.path``
and ``epicscorelibs.path.pyepics`` get stand-ins from :mod:`loader.deferred_imports`,
so ophyd's import finds the module done.  Reading anything from a stand-in
(``epicscorelibs.path.get_lib``) imports the real module, setuptools and all.
On Windows the real module also adds the library's directory to the DLL search
path, so there nothing is changed.
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

from . import deferred_imports

PACKAGE = "epicscorelibs.path"
MODULE = "epicscorelibs.path.pyepics"
DSO_INFO = "epicscorelibs.lib.ca_dsoinfo"


def point_pyepics_at_libca() -> bool:
    """Set ``PYEPICS_LIBCA`` as ``epicscorelibs.path.pyepics`` would, and defer that
    module.  Returns whether it did: not once pyepics' CA module or that package is
    imported, not on Windows, not without epicscorelibs."""
    if hasattr(os, "add_dll_directory") or "epics.ca" in sys.modules or PACKAGE in sys.modules:
        return False
    try:
        info = importlib.import_module(DSO_INFO)
    except ImportError:
        return False
    os.environ.setdefault("PYEPICS_LIBCA", info.sofilename)
    # it had its effect (the variable is set before epics.ca): not worth a warning when
    # the real module is imported later, after epics.ca
    warnings.filterwarnings("ignore", message=f"{MODULE} must be imported before epics.ca")
    return deferred_imports.defer([PACKAGE, MODULE], parents_imported=()) == [PACKAGE, MODULE]
