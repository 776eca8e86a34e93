"""ophyd's namedtuple of each Device class is made at first use (``loader/device_tuples.py``):
``get()``, ``put()`` and ``get_device_tuple()`` give what ophyd's own would.

The import hook is checked in a fresh interpreter (here ophyd is imported already).
"""
from __future__ import annotations

import collections
import inspect

import pytest
from ophyd import Component as Cpt
from ophyd import Device, Signal

from loader import device_tuples
from test_deferred_imports import run_fresh


@pytest.fixture
def installed():
    device_tuples.install()     # ophyd is imported: the name is rebound at once
    yield


def test_a_device_class_defined_after_install_gets_its_tuple_at_first_use(installed):
    class Pair(Device):
        left = Cpt(Signal, value=1.5)
        right = Cpt(Signal, value="x")

    # ophyd still builds it in Device._initialize_device, through ophyd.device.namedtuple
    assert isinstance(Pair.__dict__["_device_tuple"], device_tuples.DeviceTuple)
    pair = Pair(name="pair")
    value = pair.get()
    tuple_class = Pair.get_device_tuple()
    assert type(value) is tuple_class is pair._device_tuple
    assert (tuple_class.__name__, tuple_class.__module__, tuple_class._fields) == \
        ("PairTuple", "ophyd.device", ("left", "right"))
    assert value == (1.5, "x") and value.left == 1.5
    pair.put(tuple_class(left=2.5, right="y"))
    pair.put((3.5, "z"))                      # a plain tuple is converted, as ophyd does
    assert pair.get() == (3.5, "z")


def test_the_tuple_matches_what_collections_makes_for_ophyd():
    lazy = device_tuples.DeviceTuple("MotorTuple", ["a", "b"])
    made = lazy.__get__(None, object)
    assert made is lazy.__get__(object(), object)          # made once
    real = collections.namedtuple("MotorTuple", ["a", "b"], module="ophyd.device")
    assert made(1, 2) == real(1, 2) and made._fields == real._fields
    assert (made.__name__, made.__module__) == (real.__name__, real.__module__)


FRESH = """
import inspect, json, sys
from loader import device_tuples
device_tuples.install()
import ophyd, ophyd.device
from ophyd.areadetector import plugins
classes = [c for c in vars(plugins).values()
           if isinstance(c, type) and issubclass(c, ophyd.Device) and c.__module__ == plugins.__name__]
lazy = [c.__name__ for c in classes if type(c.__dict__["_device_tuple"]).__name__ == "DeviceTuple"]
print(json.dumps({"classes": len(classes), "lazy": len(lazy),
                  "loader": type(ophyd.device.__loader__).__name__,
                  "source": "def _initialize_device" in inspect.getsource(ophyd.device),
                  "hooks_left": [type(f).__name__ for f in sys.meta_path if "import_hooks" in type(f).__module__],
                  "fields_as_ophyd": [c.get_device_tuple()._fields == tuple(
                      n for n in c.component_names[:254] if not n.startswith("_")) for c in classes]}))
"""


def test_ophyds_own_device_classes_get_it_when_installed_before_ophyd_is_imported():
    out = run_fresh(FRESH)
    assert out["classes"] > 100 and out["lazy"] == out["classes"]
    assert out["loader"] == "SourceFileLoader" and out["source"]     # the real loader is back
    assert out["hooks_left"] == []
    assert all(out["fields_as_ophyd"])


def test_ophyd_builds_the_tuple_where_the_hook_expects_it():
    """If a future ophyd builds the tuple elsewhere, the saving is gone: fail."""
    import ophyd.device
    source = inspect.getsource(ophyd.device.Device._initialize_device)
    assert "cls._device_tuple = namedtuple(" in source
