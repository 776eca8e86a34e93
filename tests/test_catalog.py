"""The ``training`` databroker catalog: declared in catalogs/training.yml, found
through the intake.catalogs entry point, written by the session, read back equal."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from bluesky import plans as bp

from loader import catalogs
from session_support import data_directory, event_column, load_training, measured

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(gp_ioc_process, ad_ioc_process, tmp_path_factory):
    with data_directory(tmp_path_factory.mktemp("catalog") / "data"):
        yield load_training()


def test_scan_read_back_through_databroker_catalog(session):
    import databroker
    bl = session
    docs, token = measured(bl.RE)
    try:
        uid, = bl.RE(bp.scan([bl["noisy"], bl["scaler1"]], bl["m1"], -1, 1, 4))
    finally:
        bl.RE.unsubscribe(token)
    cat = databroker.catalog["training"]
    assert uid in cat
    data = cat[uid].primary.read()
    assert list(data["noisy"].values) == event_column(docs, "noisy")
    assert list(data["m1"].values) == event_column(docs, "m1")
    assert list(data["I0"].values) == event_column(docs, "I0")     # named scaler channel
    assert cat[uid].metadata["start"]["uid"] == uid
    # v1 works too
    header = cat.v1[uid]
    assert list(header.table()["noisy"]) == event_column(docs, "noisy")


def test_adsimdet_frame_comes_back_as_array(session):
    import databroker
    bl = session
    uid, = bl.RE(bp.count([bl["adsimdet"]]))
    run = databroker.catalog["training"][uid]
    data = run.primary.read()
    images = [k for k in data.data_vars if data[k].ndim >= 3]
    assert images, list(data.data_vars)
    frame = data[images[0]][0]                  # the one event: one frame, as in the HDF5 file
    assert frame.shape == (1, 1024, 1024)
    assert np.asarray(frame).max() > 0
    resources = [doc for name, doc in run.documents(fill="no") if name == "resource"]
    assert resources and resources[0]["spec"] == "AD_HDF5"


def test_runs_are_published_whole(session):
    staging = catalogs.runs_directory(session.paths["data"]) / ".incomplete"
    session.RE(bp.count([session["noisy"]]))
    assert not list(staging.glob("*.msgpack"))
    finished = list(catalogs.runs_directory(session.paths["data"]).glob("*.msgpack"))
    assert len(finished) == len(list(session.cat))


def test_catalog_seen_by_a_fresh_process(session):
    n = len(list(session.cat))
    assert n > 0
    env = dict(os.environ, BEAMLINE_DATA_DIR=str(session.paths["data"]))
    code = "import databroker; print(len(list(databroker.catalog['training'])))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == n


def test_catalog_yaml_declares_file_and_mongo_forms():
    doc = yaml.safe_load((catalogs.CATALOG_DIR / "training.yml").read_text())
    sources = doc["sources"]
    assert sources["training"]["driver"] == "bluesky-msgpack-catalog"
    assert sources["training"]["args"]["handler_registry"]["AD_HDF5"].startswith("area_detector_handlers")
    mongo = sources["training_mongo"]
    assert mongo["driver"] == "bluesky-mongo-normalized-catalog"
    assert mongo["args"]["metadatastore_db"].startswith("mongodb://")


def test_open_catalog_follows_the_data_directory(tmp_path):
    a = catalogs.open_catalog("training", tmp_path / "a")
    b = catalogs.open_catalog("training", tmp_path / "b")
    assert a is not b
    assert a.paths[0].startswith(str(tmp_path / "a"))
    assert catalogs.open_catalog("training", tmp_path / "a") is a
    with pytest.raises(catalogs.CatalogNotFound):
        catalogs.open_catalog("no_such_catalog")


def test_the_writer_finds_the_directory_intake_would_read(tmp_path, monkeypatch):
    """The catalog writer reads where its runs go from the YAML (without intake,
    which imports databroker to parse it): the same directory intake renders."""
    for data_dir in (tmp_path / "a", tmp_path / "with space"):
        rendered = catalogs.open_catalog("training", data_dir).paths[0]
        assert catalogs.declared_runs_directory("training", data_dir) == Path(os.path.dirname(rendered))
    monkeypatch.setattr(catalogs, "_session_dirs", {})      # no session's directory: the environment's
    monkeypatch.setenv(catalogs.DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert catalogs.declared_runs_directory("training") == tmp_path / "from_env" / catalogs.RUNS_SUBDIR
    assert catalogs.declared_runs_directory("training_mongo") is None      # not file-backed
    deferred = catalogs.DeferredCatalog("training", tmp_path / "b")
    assert deferred.files_directory() == catalogs.runs_directory(tmp_path / "b")
    assert not deferred.opened


DEFERRED_CATALOG = """
import sys
from loader import load_beamline
import bluesky.plans as bp
bl = load_beamline("training", labels=["motor", "simulator"])
print("databroker imported at start:", "databroker" in sys.modules)
uid, = bl.RE(bp.count([bl["noisy"]], num=2))
print("databroker imported by the first run:", "databroker" in sys.modules)
print("runs:", len(bl.cat), "events:", len(bl.cat[uid].primary.read()["noisy"]))
import os; os._exit(0)
"""


def test_session_opens_its_catalog_at_first_use(gp_ioc, tmp_path):
    """Neither starting a session nor recording its first run imports databroker
    (1-2 s, paid at the first scan until the writer found its directory in the
    YAML); the first look at ``bl.cat`` opens it, and nothing recorded is missed."""
    env = dict(os.environ, BEAMLINE_DATA_DIR=str(tmp_path / "data"))
    out = subprocess.run([sys.executable, "-c", DEFERRED_CATALOG], env=env, capture_output=True,
                         text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "databroker imported at start: False" in out.stdout
    assert "databroker imported by the first run: False" in out.stdout
    assert "runs: 1 events: 2" in out.stdout
