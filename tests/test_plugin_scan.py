"""Entry points are read once per validation (and so once per load), not once per
lookup: every scan reads the metadata of all installed distributions."""
from __future__ import annotations

from pathlib import Path

import pytest

from loader import load_beamline, plugins
from loader.validation import validate
from test_loader import copy_config


@pytest.fixture
def training_copy(tmp_path) -> Path:
    return copy_config(tmp_path)[0]


@pytest.fixture
def distribution_dir(tmp_path, monkeypatch):
    """A directory on sys.path where a test "installs" a distribution (a .dist-info)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    yield site
    monkeypatch.undo()
    plugins.rescan_entry_points()


def install_action(site: Path, name: str) -> None:
    info = site / "beamline_scan_test-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beamline-scan-test\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{plugins.SETUPS}]\n{name} = json:dumps\n")


def test_one_scan_of_the_installed_distributions_per_load(gp_ioc, training_copy, monkeypatch):
    scans = []
    real_scan = plugins.entry_points
    monkeypatch.setattr(plugins, "entry_points", lambda **kw: scans.append(kw) or real_scan(**kw))
    bl = load_beamline("training", config=training_copy, labels=["motor"])
    assert bl.session is not None and bl.plans and "catalog" in bl.callbacks
    assert len(scans) == 1, f"{len(scans)} scans of the installed distributions in one load"


def test_a_plugin_installed_after_a_validation_is_seen_by_the_next(training_copy, distribution_dir):
    validate(config=training_copy, import_classes=False)
    install_action(distribution_dir, "scan_test_action")
    # the same load's lookups keep using its scan ...
    assert "scan_test_action" not in plugins.load_group(plugins.SETUPS)[0]
    validate(config=training_copy, import_classes=False)
    # ... the next validation (or load) reads the distributions again
    assert plugins.load_group(plugins.SETUPS)[0]["scan_test_action"] is __import__("json").dumps
