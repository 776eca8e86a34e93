"""The loader keeps the garbage collector out of a load, and gives it back as found.

During a load the collector is off; at the end the loaded objects are frozen
(later full collections skip them).  A reload that drops devices must still free
them: ophyd devices hold reference cycles, which only the collector breaks.
"""
from __future__ import annotations

import gc

import pytest

from loader import load_beamline
from loader.gc_pause import collect_dropped, gc_paused
from test_loader import copy_config


@pytest.fixture
def collector_restored():
    enabled = gc.isenabled()
    yield
    (gc.enable if enabled else gc.disable)()


def test_pause_nests_and_restores(collector_restored):
    gc.enable()
    with gc_paused(freeze=False):
        with gc_paused(freeze=False):
            assert not gc.isenabled()
        assert not gc.isenabled()          # the outer load is still running
    assert gc.isenabled()
    gc.disable()
    with gc_paused(freeze=False):
        pass
    assert not gc.isenabled()              # a collector switched off by the user stays off


def test_load_leaves_the_collector_on_and_the_devices_frozen(gp_ioc, tmp_path, collector_restored):
    gc.enable()
    cfg, _ = copy_config(tmp_path, labels=["motor"])
    collect_dropped()           # what earlier tests dropped would otherwise leave with this load
    gc.freeze()
    before = gc.get_freeze_count()
    bl = load_beamline("training", config=cfg, session=False)
    assert gc.isenabled()
    assert gc.get_freeze_count() > before
    assert not gc.is_tracked(bl.m1) or bl.m1 not in gc.get_objects(generation=2)


FREES_DROPPED = """
import gc, sys, weakref
import happi
from loader import load_beamline
cfg, db = sys.argv[1], sys.argv[2]
bl = load_beamline("training", config=cfg, session=False)
dropped = weakref.ref(bl.m3)
# an ophyd callback thread keeps the callback it ran last: make it one of m3's
import threading
from ophyd import _pyepics_shim as shim
ran = threading.Event()
shim.get_dispatcher().schedule_utility_task(lambda m3=bl.m3: ran.set())
ran.wait(5)
client = happi.Client(path=db)
client.remove_item(client.find_item(name="m3"))
print("removed:", bl.reload()["removed"])
print("m3 freed:", dropped() is None, "m4 connected:", bl.m4.connected, "collector on:", gc.isenabled())
import os; os._exit(0)
"""


def test_reload_frees_the_devices_it_drops(gp_ioc, tmp_path):
    """In a fresh process (in this one, earlier tests' beamlines share m3's PVs); an
    ophyd callback thread whose last callback held m3 lets go of it."""
    import os
    import subprocess
    import sys
    cfg, db = copy_config(tmp_path, labels=["motor"])
    out = subprocess.run([sys.executable, "-c", FREES_DROPPED, str(cfg), str(db)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "removed: ['m3']" in out.stdout
    assert "m3 freed: True m4 connected: True collector on: True" in out.stdout
