"""Setup actions from other installed distributions: a working plugin is used by
the loader; one whose import fails is reported and skipped, never fatal."""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loader import load_beamline
from loader.beamline import READY
from loader.cli import main

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = {"tag_setup_plugin": "beamline-test-tag-plugin",
           "broken_setup_plugin": "beamline-test-broken-plugin"}


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=300)


def can_build_in_place() -> bool:
    """setuptools builds wheels without build isolation only with `wheel` (or >= 70.1)."""
    import setuptools
    major_minor = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
    return importlib.util.find_spec("wheel") is not None or major_minor >= (70, 1)


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory):
    """pip-install the test plugins into this interpreter's environment (removed afterwards)."""
    work = tmp_path_factory.mktemp("plugin_src")
    for directory, dist in PLUGINS.items():
        source = work / directory
        shutil.copytree(ROOT / "tests" / "plugins" / directory, source)   # builds write beside the source
        flags = ["--no-build-isolation"] if can_build_in_place() else []
        done = pip("install", "--no-deps", *flags, str(source))
        assert done.returncode == 0, done.stdout + done.stderr
    importlib.invalidate_caches()
    yield
    for dist in PLUGINS.values():
        pip("uninstall", "-y", dist)
    importlib.invalidate_caches()


def config_with_setup(tmp_path: Path, setup: dict) -> Path:
    db = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", db)
    config = yaml.safe_load((ROOT / "instrument_config" / "training.yml").read_text())
    config.update(happi="happi_db.json", load={"labels": ["motor"]})
    config["setup"] = setup
    cfg = tmp_path / "training.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return cfg


def test_validate_checks_plugin_actions(installed_plugins, tmp_path, capsys):
    cfg = config_with_setup(tmp_path, {"m2": [{"action": "test_tag", "text": "hello"}]})
    assert main(["validate", "--config", str(cfg)]) == 0, capsys.readouterr().err
    cfg = config_with_setup(tmp_path, {"m2": [{"action": "test_tag", "txt": "hello"}],
                                       "m3": [{"action": "test_broken"}]})
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "test_tag: unknown key 'txt' (did you mean 'text'?)" in err
    assert ("setup action 'test_broken' is installed but unusable: import failed: "
            "ImportError: this plugin is broken on purpose") in err


def test_loader_uses_plugin_and_skips_the_broken_one(installed_plugins, gp_ioc, tmp_path):
    cfg = config_with_setup(tmp_path, {"m2": [{"action": "test_tag", "text": "hello"}],
                                       "m3": [{"action": "test_broken"}]})
    bl = load_beamline("training", config=cfg, session=False)
    assert bl.m2.plugin_tag == "hello"
    rows = {r.name: r for r in bl.status()}
    assert rows["m2"].state == READY
    assert rows["m3"].state == "setup failed" and "broken on purpose" in rows["m3"].reason
    assert [e.name for e in bl.plugin_errors] == ["test_broken"]
    assert "beamline-test-broken-plugin" in str(bl.status())
    assert sum(r.state == READY for r in rows.values()) == 15
