"""A plan from another installed distribution shows up in ``bl.plans``.

The tiny distribution in tests/plugins/extra_plans is really pip-installed
(no network, no build dependencies: it has its own PEP 517 backend) and
uninstalled afterwards.
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from session_support import data_directory, load_training

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).parent / "plugins" / "extra_plans"
DIST = "beamline-extra-plans"


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=240)


@pytest.fixture
def installed_plugin(tmp_path):
    source = tmp_path / "extra_plans"
    shutil.copytree(PLUGIN, source)          # build outside the checkout: nothing written there
    result = pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    importlib.invalidate_caches()
    try:
        yield DIST
    finally:
        pip("uninstall", "-y", DIST)
        sys.modules.pop("extra_plans", None)
        importlib.invalidate_caches()


def test_plugin_plan_is_loaded_and_runs(gp_ioc, installed_plugin, tmp_path):
    with data_directory(tmp_path / "data"):
        bl = load_training(labels=["simulator"])
    assert "extra_count" in bl.plans
    assert "two_pass_scan" in bl.plans                  # the project's own are still there
    uid, = bl.RE(bl.plans["extra_count"]([bl["noisy"]], num=2))
    start = bl.cat[uid].metadata["start"]
    assert start["plugin"] == "extra_plans"
    assert start["num_points"] == 2
