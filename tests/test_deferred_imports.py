"""Libraries apstools imports but a session does not use are imported at first use
(issue 7: "import lazily what the session does not need at start").

Each test runs in a fresh interpreter: in this one, earlier tests have imported
everything already, and a deferral only applies to what is not yet imported.
"""
import json
import os
import subprocess
import sys

import pytest


def run_fresh(code: str, *args: str, env: dict | None = None, timeout: float = 120) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON line last.  A crash
    shows every thread's Python stack in the failure (faulthandler)."""
    env = dict(os.environ if env is None else env, PYTHONFAULTHANDLER="1")
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOAD = """
import json, sys
from loader import load_beamline
from loader.deferred_imports import is_deferred
bl = load_beamline("training", labels=["iocstats", "shutters"], session=False)
out = {"failed": [r.name for r in bl.status().failed],
       "apstools": [is_deferred("apstools.devices"), is_deferred("apstools.synApps"),
                    "apstools.devices.lakeshore_controllers" in sys.modules],
       "deferred_after_load": [m for m in ("pint", "h5py", "openpyxl", "networkx") if is_deferred(m)],
       "pint_ran": "pint.util" in sys.modules,
       "setuptools": [m for m in ("setuptools", "pkg_resources") if m in sys.modules]}
# first use, through the name apstools bound at its import
from apstools.devices import srs570_preamplifier
out["quantity"] = str(srs570_preamplifier.pint.UnitRegistry()("3 mm").to("m"))
out["pint_real"] = type(sys.modules["pint"]).__name__ == "module"
import h5py
with h5py.File(sys.argv[1], "w") as f:
    f["x"] = [1, 2, 3]
with h5py.File(sys.argv[1], "r") as f:
    out["h5"] = f["x"][()].tolist()
# apstools' subclass of openpyxl's exception, and a workbook written and read back
from apstools.utils import spreadsheet
import openpyxl
book = openpyxl.Workbook()
book.active["A1"] = "m1"
book.save(sys.argv[1] + ".xlsx")
try:       # openpyxl's InvalidFileException, raised again as apstools' ExcelReadError
    spreadsheet.ExcelDatabaseFileGeneric(sys.argv[1] + ".csv")
except spreadsheet.ExcelReadError as exc:
    out["read_error"] = str(exc)
out["cell"] = openpyxl.load_workbook(sys.argv[1] + ".xlsx").active["A1"].value
out["one_exception"] = (spreadsheet.ExcelReadError.__mro__[1]
                        is openpyxl.utils.exceptions.InvalidFileException
                        is sys.modules["openpyxl.utils.exceptions"].InvalidFileException)
# ophyd's graph of an area detector's plugin ports, through the name ophyd bound
from ophyd.areadetector import base
graph = base.nx.DiGraph([("SIM1", "HDF1"), ("HDF1", "ROI1")])
out["ports_downstream"] = sorted(base.nx.descendants(graph, "SIM1"))
out["deferred_after_use"] = [m for m in ("pint", "h5py", "openpyxl", "networkx") if is_deferred(m)]
# apstools' device packages themselves: the classes the load built from, the same objects
import apstools.devices, apstools.synApps
out["package_names"] = sorted(set(dir(apstools.devices)) & {"SimulatedApsPssShutterWithStatus", "LakeShore336Device"})
out["same_classes"] = [type(bl["shutter"]) is apstools.devices.SimulatedApsPssShutterWithStatus,
                       issubclass(type(bl["gp_stats"]), apstools.synApps.IocStatsDevice),
                       apstools.synApps.iocstats is sys.modules["apstools.synApps.iocstats"],
                       is_deferred("apstools.devices"), is_deferred("apstools.synApps")]
print(json.dumps(out))
import os; os._exit(0)
"""


def test_a_load_leaves_pint_h5py_openpyxl_and_networkx_for_first_use(gp_ioc, tmp_path):
    out = run_fresh(LOAD, str(tmp_path / "x.h5"))
    assert out["failed"] == []
    assert out["apstools"] == [True, True, False]       # their used submodules only
    assert out["deferred_after_load"] == ["pint", "h5py", "openpyxl", "networkx"]
    assert not out["pint_ran"]
    assert out["setuptools"] == []          # loader/libca_path.py
    assert out["quantity"] == "0.003 meter" and out["pint_real"]
    assert out["h5"] == [1, 2, 3]
    assert out["cell"] == "m1" and out["one_exception"] is True
    assert "does not support .csv" in out["read_error"]
    assert out["ports_downstream"] == ["HDF1", "ROI1"]
    assert out["deferred_after_use"] == []
    assert out["package_names"] == ["LakeShore336Device", "SimulatedApsPssShutterWithStatus"]
    assert out["same_classes"] == [True, True, True, False, True]   # dir() ran apstools.devices only


MOTORS_ONLY = """
import json, sys
from loader import load_beamline
from loader.deferred_imports import is_deferred
bl = load_beamline("training", labels=["motor"], session=False)
out = {"failed": [r.name for r in bl.status().failed], "ready": len(bl.status()) - len(bl.status().failed),
       "bluesky_after_load": [m for m in ("bluesky", "bluesky.callbacks", "matplotlib") if m in sys.modules]}
# bluesky imported later (a session starting): what is below it is still left to first use
import bluesky.callbacks
out["best_effort_deferred"] = is_deferred("bluesky.callbacks.best_effort")
out["pyplot_after_import"] = "matplotlib.pyplot" in sys.modules
from bluesky.callbacks.best_effort import BestEffortCallback
out["real_class"] = [BestEffortCallback.__module__, "matplotlib.pyplot" in sys.modules,
                     is_deferred("bluesky.callbacks.best_effort")]
print(json.dumps(out))
import os; os._exit(0)
"""


def test_a_load_that_uses_no_bluesky_does_not_import_it(gp_ioc):
    """bluesky (~0.06 s) is imported by a session or by apstools; a load of our own
    motors alone used to import it only to defer ``bluesky.callbacks.best_effort``
    (matplotlib.pyplot) below it.  Now that waits until bluesky is imported."""
    out = run_fresh(MOTORS_ONLY)
    assert out["failed"] == [] and out["ready"] == 16
    assert out["bluesky_after_load"] == []
    assert out["best_effort_deferred"] is True and out["pyplot_after_import"] is False
    assert out["real_class"] == ["bluesky.callbacks.best_effort", True, False]


HAPPI_AFTER_A_LOAD = """
import json, sys
from loader import load_beamline
from loader.deferred_imports import is_deferred
bl = load_beamline("training", labels=["motor"], session=False)
item = bl["m1"].md
out = {"ready": len(bl.status()) - len(bl.status().failed),
       "item": [type(item).__module__, type(item).__name__],
       "happi_deferred": is_deferred("happi"),
       "unimported": [m for m in ("happi.client", "happi.backends", "happi.loader", "pymongo", "jinja2")
                      if m not in sys.modules]}
# happi used afterwards, as ``happi search`` or a user's script in the same process would
import happi
from happi.backends.mongo_db import MongoBackend
client = happi.Client(path=str(bl.report.database.path))
found = [r for r in client.search(beamline="training") if "motor" in r.item.labels]
out["client"] = [len(found), sorted(r.item.name for r in found)[:2],
                 isinstance(item, happi.HappiItem), type(found[0].item) is type(item),
                 happi.containers is sys.modules["happi.containers"], MongoBackend.__module__]
out["happi_deferred_after_use"] = is_deferred("happi")
print(json.dumps(out))
import os; os._exit(0)
"""


def test_a_load_makes_happi_items_without_importing_happis_client_and_backends(gp_ioc):
    """happi's ``__init__`` imports its client, every backend (pymongo) and its device
    loader (jinja2, asyncio): ~0.1 s of every load, which only makes happi items.
    happi works as before when it is used afterwards in the same process."""
    out = run_fresh(HAPPI_AFTER_A_LOAD)
    assert out["ready"] == 16
    assert out["item"] == ["loader.containers", "BeamlineItem"]
    assert out["happi_deferred"] is True
    assert out["unimported"] == ["happi.client", "happi.backends", "happi.loader", "pymongo", "jinja2"]
    assert out["client"] == [16, ["m1", "m10"], True, True, True, "happi.backends.mongo_db"]
    assert out["happi_deferred_after_use"] is False


SUBMODULES = """
import json, sys
from loader.deferred_imports import defer, is_deferred
out = {"deferred": defer(["openpyxl", "h5py"], submodules_alone=())}
# as apstools.utils.spreadsheet does: the package, then one of its submodules
import openpyxl
import openpyxl.utils.exceptions
out["exception"] = openpyxl.utils.exceptions.InvalidFileException.__name__
out["one_utils"] = sys.modules["openpyxl.utils"] is openpyxl.utils is sys.modules["openpyxl"].utils
# a submodule first, then the package
import h5py
was_deferred = is_deferred("h5py")
import h5py._hl.files as files
out["h5py"] = [was_deferred, h5py.File is files.File, files is sys.modules["h5py._hl.files"],
               files.__spec__.name, type(files.__spec__.loader).__name__]
print(json.dumps(out))
"""


def test_a_submodule_import_gets_the_module_the_package_imported():
    """The first use of a deferred package may be a submodule import; CPython then
    must not import a second copy of a submodule the package has just imported
    (apstools' ``import openpyxl.utils.exceptions`` failed that way)."""
    out = run_fresh(SUBMODULES)
    assert out["deferred"] == ["openpyxl", "h5py"]
    assert out["exception"] == "InvalidFileException"
    assert out["one_utils"] is True
    assert out["h5py"] == [True, True, True, "h5py._hl.files", "SourceFileLoader"]


ALONE = """
import json, sys
from loader.deferred_imports import defer, is_deferred
out = {"deferred": defer(["openpyxl"], submodules_alone=["openpyxl"])}
before = set(sys.modules)
import openpyxl
import openpyxl.utils.exceptions as exceptions
out["imported"] = sorted(m for m in set(sys.modules) - before if m.startswith("openpyxl"))
out["still_deferred"] = is_deferred("openpyxl")
out["named"] = openpyxl.utils is sys.modules["openpyxl.utils"] and openpyxl.utils.exceptions is exceptions
first = exceptions.InvalidFileException
book = openpyxl.Workbook()                      # the package itself, at last
from openpyxl.reader import excel
real = sys.modules["openpyxl"]
out["after"] = [is_deferred("openpyxl"), type(real).__name__, real.utils is sys.modules["openpyxl.utils"],
                excel.InvalidFileException is first, real.utils.exceptions.InvalidFileException is first]
print(json.dumps(out))
"""


def test_a_package_can_let_its_submodules_be_imported_alone():
    """apstools subclasses ``openpyxl.utils.exceptions.InvalidFileException`` at
    import: that submodule alone, not openpyxl's whole ``__init__``; the package
    itself later shares the same submodules."""
    out = run_fresh(ALONE)
    assert out["deferred"] == ["openpyxl"]
    assert "openpyxl.utils.exceptions" in out["imported"] and len(out["imported"]) < 10
    assert out["still_deferred"] is True and out["named"] is True
    assert out["after"] == [False, "module", True, True, True]


EXPORTING = """
import json, sys
sys.path.insert(0, sys.argv[1])
from loader.deferred_imports import defer, is_deferred
out = {"deferred": defer(["devpkg"], exported=["devpkg"], parents_imported=())}
import devpkg
from devpkg import Alpha, renamed, Uses
out["imported"] = sorted(m for m in sys.modules if m.startswith("devpkg."))
out["still_deferred"] = is_deferred("devpkg")
out["values"] = [renamed(), issubclass(Uses, Alpha), devpkg.alpha is sys.modules["devpkg.alpha"]]
star = {}
exec("from devpkg import *", star)      # runs the package: what it binds is the package's
out["star"] = sorted(name for name in star if not name.startswith("__"))
out["rebound"] = devpkg.Twice          # bound again in the __init__: the package itself decides
real = sys.modules["devpkg"]
out["after"] = [is_deferred("devpkg"), type(real).__name__, real.RAN, real.Alpha is Alpha,
                real.alpha is sys.modules["devpkg.alpha"], real.Uses is Uses, devpkg.Beta is real.Beta]
print(json.dumps(out))
"""

DEVPKG = {
    "__init__.py": "from .alpha import Alpha\nfrom .alpha import helper as renamed\n"
                   "from .uses_package import Uses\nfrom .beta import Beta, Twice\n"
                   "Twice = 'bound again'\nRAN = True\n",
    "alpha.py": "class Alpha:\n    pass\n\ndef helper():\n    return 'helped'\n",
    # takes a name from its package, as apstools' lakeshore_controllers does
    "uses_package.py": "from . import Alpha\n\nclass Uses(Alpha):\n    pass\n",
    "beta.py": "class Beta:\n    pass\n\nTwice = 'from beta'\n",
}


def test_a_name_of_an_exporting_package_comes_from_its_one_submodule(tmp_path):
    """``from apstools.synApps import SwaitRecord`` imports ``swait`` alone; only a
    name the package's source does not settle runs the package, which then shares
    the submodules already imported."""
    package = tmp_path / "devpkg"
    package.mkdir()
    for name, text in DEVPKG.items():
        (package / name).write_text(text)
    out = run_fresh(EXPORTING, str(tmp_path))
    assert out["deferred"] == ["devpkg"]
    assert out["imported"] == ["devpkg.alpha", "devpkg.uses_package"]     # not beta
    assert out["still_deferred"] is True
    assert out["values"] == ["helped", True, True]
    assert out["rebound"] == "bound again"
    assert out["star"] == ["Alpha", "Beta", "RAN", "Twice", "Uses", "alpha", "beta", "renamed", "uses_package"]
    assert out["after"] == [False, "module", True, True, True, True, True]


BELOW_A_PACKAGE = """
import json, sys
from loader.deferred_imports import defer, is_deferred
out = {"no_parent": defer(["xml.dom.minidom"])}
import xml.dom
out["deferred"] = defer(["xml.dom.minidom"])
out["named_by_parent"] = xml.dom.minidom is sys.modules["xml.dom.minidom"]
out["still_deferred"] = is_deferred("xml.dom.minidom")
from xml.dom import minidom
out["tag"] = minidom.parseString("<scan/>").documentElement.tagName
out["real_everywhere"] = xml.dom.minidom is sys.modules["xml.dom.minidom"] and type(xml.dom.minidom).__name__ == "module"
print(json.dumps(out))
"""


def test_a_module_below_a_package_is_deferred_under_its_parent():
    out = run_fresh(BELOW_A_PACKAGE)
    assert out == {"no_parent": [], "deferred": ["xml.dom.minidom"], "named_by_parent": True,
                   "still_deferred": True, "tag": "scan", "real_everywhere": True}


LEFT_ALONE = """
import json, sys
import pint
from loader.deferred_imports import defer, is_deferred
out = {"deferred": defer(["pint", "no_such_module_anywhere"]), "pint": is_deferred("pint")}
try:
    import no_such_module_anywhere
except ModuleNotFoundError as exc:
    out["missing"] = str(exc)
print(json.dumps(out))
"""


def test_imported_or_missing_modules_are_left_alone():
    out = run_fresh(LEFT_ALONE)
    assert out == {"deferred": [], "pint": False,
                   "missing": "No module named 'no_such_module_anywhere'"}


@pytest.mark.parametrize("attr", ["__spec__", "__name__", "__file__"])
def test_the_import_system_reads_a_stand_in_without_importing(attr):
    out = run_fresh(f"""
import json
from loader.deferred_imports import defer, is_deferred
defer(["pint"])
import pint
getattr(pint, {attr!r})
print(json.dumps({{"still_deferred": is_deferred("pint")}}))
""")
    assert out["still_deferred"] is True


THREADS = """
import json, sys, threading
from loader.deferred_imports import defer, is_deferred
defer(["pint"])
import pint
start = threading.Barrier(8)
got = []

def first_use():
    start.wait()
    got.append(pint.UnitRegistry)

threads = [threading.Thread(target=first_use) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
print(json.dumps({"same": len(got) == 8 and len(set(map(id, got))) == 1,
                  "real": sys.modules["pint"].UnitRegistry is got[0], "deferred": is_deferred("pint")}))
"""


def test_threads_using_it_first_at_once_get_one_module():
    assert run_fresh(THREADS) == {"same": True, "real": True, "deferred": False}


# a library (slowlib) and a module that, like apstools, takes names from it at import
SLOWLIB = '''
OPTIONS = {}
IMPORTED = True

class Table:
    def __init__(self, rows=()):
        self.rows = list(rows)

def set_option(key, value):
    OPTIONS[key] = value
'''
USER = '''
import enum
import slowlib
from slowlib import Table

class Style(enum.Enum):
    plain = str
    table = slowlib.Table

slowlib.set_option("max_rows", None)

def make(rows):
    return Table(rows)
'''
LENDING = """
import json, sys
sys.path.insert(0, sys.argv[1])
from loader.deferred_imports import defer, is_deferred, lending_names
out = {"deferred": defer(["slowlib"], lent={"slowlib": ["Table"]}, replayed={"slowlib": ["set_option"]},
                         parents_imported=())}
with lending_names():
    import user
out["after_import"] = is_deferred("slowlib")
out["members"] = [m.name for m in user.Style]
out["lent_repr"] = repr(user.Table)
table = user.Style.table.value([1, 2])           # first use: the library is imported now
real = sys.modules["slowlib"]
out["first_use"] = [is_deferred("slowlib"), type(table) is real.Table, table.rows]
out["replayed"] = real.OPTIONS
out["isinstance"] = isinstance(user.make([3]), user.Table)
class Mine(user.Table):
    pass
out["subclass"] = issubclass(Mine, real.Table) and Mine.__mro__[1] is real.Table
# outside the window, the same import gives the real class
from slowlib import Table
out["outside"] = Table is real.Table
print(json.dumps(out))
"""


def test_names_taken_at_import_are_lent_until_first_use(tmp_path):
    """apstools takes ``pandas.DataFrame`` (an enum value) and bluesky's
    ``BestEffortCallback`` at import and calls ``pd.set_option`` there: while the
    device classes import, those are lent, and the library is imported at their
    first use, with the option set then."""
    (tmp_path / "slowlib.py").write_text(SLOWLIB)
    (tmp_path / "user.py").write_text(USER)
    out = run_fresh(LENDING, str(tmp_path))
    assert out["deferred"] == ["slowlib"]
    assert out["after_import"] is True                     # import, enum, option: not imported
    assert out["members"] == ["plain", "table"]           # the lent name is an enum member
    assert out["lent_repr"] == "<slowlib.Table (imported at first use)>"
    assert out["first_use"] == [False, True, [1, 2]]
    assert out["replayed"] == {"max_rows": None}
    assert out["isinstance"] is True and out["subclass"] is True
    assert out["outside"] is True


NOT_LENDING = """
import json, sys
sys.path.insert(0, sys.argv[1])
from loader.deferred_imports import defer, is_deferred
defer(["slowlib"], lent={"slowlib": ["Table"]}, replayed={"slowlib": ["set_option"]}, parents_imported=())
from slowlib import Table
print(json.dumps({"deferred": is_deferred("slowlib"), "real": isinstance(Table, type)}))
"""


def test_outside_the_window_a_name_is_the_real_object(tmp_path):
    """After a load, ``from pandas import DataFrame`` in a user's session is pandas' own class."""
    (tmp_path / "slowlib.py").write_text(SLOWLIB)
    assert run_fresh(NOT_LENDING, str(tmp_path)) == {"deferred": False, "real": True}


SESSION = """
import contextlib, io, json, sys
from loader import load_beamline
from loader.deferred_imports import is_deferred
from bluesky.plans import count
bl = load_beamline("training", labels=["motor", "simulator", "iocstats"])
out = {"failed": [r.name for r in bl.status().failed],
       "deferred": [m for m in ("pandas", "bluesky.callbacks.best_effort") if is_deferred(m)],
       "matplotlib": "matplotlib" in sys.modules}
bec = bl.callbacks["best_effort"]
out["made_at_load"] = bec.is_made
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    bl.RE(count([bl["noisy"]], 2))
out["table"] = "Transient Scan ID" in printed.getvalue() and "noisy" in printed.getvalue()
from bluesky.callbacks.best_effort import BestEffortCallback
out["made"] = type(bec.made()) is BestEffortCallback
from apstools.utils import listdevice, misc, TableStyle
out["apstools_bec"] = isinstance(bec.made(), misc.BestEffortCallback)
import pandas
frame = listdevice(bl["m1"], table_style=TableStyle.pandas)
out["frame"] = type(frame) is pandas.DataFrame and "m1_user_setpoint" in set(frame["data name"])
out["max_rows"] = pandas.get_option("display.max_rows")
print(json.dumps(out))
import os; os._exit(0)
"""


def test_a_session_imports_pandas_and_matplotlib_at_first_use(gp_ioc, tmp_path):
    """pandas (0.2 s) and bluesky's best_effort with matplotlib (0.4 s) are not
    imported by a load; the first scan makes the live table, and apstools' pandas
    tables work, with the option apstools set at import."""
    env = dict(os.environ, BEAMLINE_DATA_DIR=str(tmp_path / "data"))
    out = run_fresh(SESSION, env=env)
    assert out["failed"] == []
    assert out["deferred"] == ["pandas", "bluesky.callbacks.best_effort"]
    assert out["matplotlib"] is False and out["made_at_load"] is False
    assert out["table"] is True and out["made"] is True and out["apstools_bec"] is True
    assert out["frame"] is True and out["max_rows"] is None


XARRAY_PINT = """
import json, sys
import numpy as np
from loader.deferred_imports import defer, is_deferred
defer(["pint"])
from loader.catalogs import open_catalog
cat = open_catalog("training", sys.argv[1])          # imports databroker, xarray
import xarray
from xarray.namedarray import pycompat
from loader import xarray_pint
out = {"installed": xarray_pint.install(), "type_before": list(pycompat.array_type("pint")),
       "values": xarray.DataArray(np.arange(3)).to_numpy().tolist(), "deferred": is_deferred("pint")}
import pint
length = pint.UnitRegistry().Quantity(np.arange(3.0), "m")      # pint's first use
out["type_after"] = pycompat.array_type("pint") == (pint.Quantity,) and isinstance(length, pint.Quantity)
out["version"] = str(pycompat.mod_version("pint")) == pint.__version__
print(json.dumps(out))
"""


def test_reading_data_does_not_import_pint_to_rule_out_its_arrays(tmp_path):
    """xarray asks at the first read whether an array is a pint quantity (0.3 s to
    import pint); until pint is imported none can be, and after it xarray's own
    check is back.  Fails if a future xarray drops the hook (loader/xarray_pint.py)."""
    out = run_fresh(XARRAY_PINT, str(tmp_path))
    assert out == {"installed": True, "type_before": [], "values": [0, 1, 2], "deferred": True,
                   "type_after": True, "version": True}


def test_xarray_keeps_its_own_pint_check_once_pint_is_imported():
    out = run_fresh("""
import json
import pint, xarray
from loader import xarray_pint
from xarray.namedarray import pycompat
print(json.dumps({"installed": xarray_pint.install(), "type": pycompat.array_type("pint") == (pint.Quantity,)}))
""")
    assert out == {"installed": False, "type": True}


def test_a_star_import_of_a_stand_in_gives_the_real_modules_names():
    """``from h5py import *`` (no ``__all__``) took the names of the stand-in's own
    ``__dict__``: nothing of h5py.  It gives what the real module would."""
    out = run_fresh("""
import json
from loader.deferred_imports import defer
defer(["h5py", "pint"])
import h5py, pint
names, pints = {}, {}
exec("from h5py import *", names)
exec("from pint import *", pints)
print(json.dumps({"h5py": names.get("File") is h5py.File and "_deferred_real" not in names,
                  "pint": sorted(pint.__all__) == sorted(n for n in pints if n != "__builtins__")}))
""")
    assert out == {"h5py": True, "pint": True}
