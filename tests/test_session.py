"""The session: RunEngine metadata, persistent scan_id, callbacks from entry
points (guarded), logging -- against the real simulated IOCs."""
from __future__ import annotations

import json
import logging

import pytest
from bluesky import plans as bp

from loader.callbacks import GuardedCallback, guarded
from loader.persistent_md import PersistentMetadata
from loader.session import DEFAULT_PATHS, resolve_paths
from session_support import data_directory, event_column, load_training, measured

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(gp_ioc_process, ad_ioc_process, tmp_path_factory):
    data = tmp_path_factory.mktemp("session") / "data"
    with data_directory(data):
        bl = load_training()
        yield bl


def test_session_attributes(session):
    bl = session
    assert {"two_pass_scan", "findpeak_multipass", "repeat_findpeak",
            "go_to_temperature", "temperature_count"} <= set(bl.plans)
    assert {"catalog", "spec", "best_effort"} <= set(bl.callbacks)
    assert "nexus" not in bl.callbacks                  # disabled in the YAML
    assert bl.session.problems == []
    assert bl.paths["data"].name == "data"
    assert bl.cat is not None and hasattr(bl.cat, "v1")


def test_best_effort_without_display_makes_no_plot_windows(session):
    from loader.callbacks.best_effort import has_display
    assert not has_display()                              # tests run with the Agg backend
    assert session.callbacks["best_effort"]._plots_enabled is False


def test_a_wrong_best_effort_option_is_reported_at_session_start():
    """The session's BestEffortCallback is made at its first document (matplotlib's
    import waits until then), but an option for bluesky's class makes it at once,
    so that a wrong one is a session problem, not a failure at the first scan."""
    from bluesky.callbacks.best_effort import BestEffortCallback

    from loader.callbacks.best_effort import best_effort
    deferred = best_effort(None, plots=False)
    assert deferred.is_made is False
    assert type(best_effort(None, plots=False, table_enabled=False)) is BestEffortCallback
    with pytest.raises(TypeError, match="no_such_option"):
        best_effort(None, plots=False, no_such_option=1)


def test_metadata_in_every_run(session):
    bl = session
    uid, = bl.RE(bp.count([bl["noisy"]]))
    start = bl.cat[uid].metadata["start"]
    for key in ("beamline_id", "instrument_name", "proposal_id", "login_id", "pid", "versions"):
        assert key in start, key
    assert start["beamline_id"] == bl.config["metadata"]["beamline_id"]
    assert start["versions"]["bluesky"] and start["versions"]["databroker"]
    assert start["pid"] == __import__("os").getpid()


def test_scan_id_continues_in_new_session(session):
    bl = session
    bl.RE(bp.count([bl["noisy"]]))
    last = bl.RE.md["scan_id"]
    stored = json.loads((bl.paths["metadata"] / PersistentMetadata.FILENAME).read_text())
    assert stored["scan_id"] == last
    with data_directory(bl.paths["data"]):
        again = load_training(labels=["simulator"])      # a new session, same data directory
    assert again.RE is not bl.RE
    assert again.RE.md["scan_id"] == last
    uid, = again.RE(bp.count([again["noisy"]]))
    assert again.cat[uid].metadata["start"]["scan_id"] == last + 1
    # the first session, still open, counts on from the number on disk
    uid, = bl.RE(bp.count([bl["noisy"]]))
    assert bl.cat[uid].metadata["start"]["scan_id"] == last + 2


def test_raising_callback_neither_stops_the_run_nor_loses_catalog_data(session, caplog):
    bl = session
    calls = []

    def explode(name, doc):
        calls.append(name)
        if name == "event" or name == "event_page":
            raise RuntimeError("callback failure on purpose")

    docs, token = measured(bl.RE)
    bad = bl.RE.subscribe(guarded("explode", explode))
    try:
        with caplog.at_level(logging.WARNING, logger="loader.callbacks"):
            uid, = bl.RE(bp.scan([bl["noisy"]], bl["m1"], -0.5, 0.5, 5))
    finally:
        bl.RE.unsubscribe(bad)
        bl.RE.unsubscribe(token)
    assert "stop" in calls                                 # it kept receiving documents
    assert any("explode" in r.getMessage() for r in caplog.records)
    run = bl.cat[uid]
    assert run.metadata["stop"]["exit_status"] == "success"
    assert list(run.primary.read()["noisy"].values) == event_column(docs, "noisy")


def test_guard_logs_once_per_run(caplog):
    cb = GuardedCallback("bad", lambda name, doc: 1 / 0)
    with caplog.at_level(logging.WARNING, logger="loader.callbacks"):
        for name in ("start", "descriptor", "event", "event", "stop"):
            cb(name, {})
    assert cb.failures == 5
    assert sum(r.exc_info is not None for r in caplog.records) == 1


def test_log_file_written(session):
    log = session.paths["logs"] / "ipython_logger.log"
    assert log.exists()
    text = log.read_text()
    assert "session ready" in text
    assert f"|{__import__('os').getpid()}|" in text      # lines carry the process id


def test_resolve_paths_defaults_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("BEAMLINE_DATA_DIR", raising=False)
    paths = resolve_paths({"data": "d"}, cwd=tmp_path)
    assert paths["data"] == tmp_path / "d"
    assert paths["spec"] == tmp_path / "d" / "spec"
    assert paths["logs"] == tmp_path / DEFAULT_PATHS["logs"]
    monkeypatch.setenv("BEAMLINE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert resolve_paths({"data": "d"}, cwd=tmp_path)["data"] == tmp_path / "elsewhere"


def test_persistent_metadata_is_atomic_and_reloads(tmp_path):
    md = PersistentMetadata(tmp_path)
    md["scan_id"] = 7
    assert PersistentMetadata(tmp_path)["scan_id"] == 7
    assert [p.name for p in tmp_path.iterdir()] == [PersistentMetadata.FILENAME]  # no temp files left
    with pytest.raises(TypeError):
        md["bad"] = object()
    assert "bad" not in PersistentMetadata(tmp_path)


def test_callbacks_chosen_in_the_yaml(gp_ioc, tmp_path):
    """nexus enabled, spec disabled, an unknown name reported (not fatal)."""
    import h5py
    import yaml

    from ca_helpers import wait_for
    from loader.config import CHECKOUT_CONFIG_DIR

    config = yaml.safe_load((CHECKOUT_CONFIG_DIR / "training.yml").read_text())
    config["happi"] = str((CHECKOUT_CONFIG_DIR / config["happi"]).resolve())
    config["callbacks"] = [{"name": "catalog"}, {"name": "spec", "enabled": False},
                           {"name": "nexus", "enabled": True}, {"name": "no_such_callback"}]
    path = tmp_path / "training.yml"
    path.write_text(yaml.safe_dump(config))
    with data_directory(tmp_path / "data"):
        bl = load_training(labels=["simulator", "motor"], config=path)
    assert set(bl.callbacks) == {"catalog", "nexus"}
    assert any("no_such_callback" in p for p in bl.session.problems)
    uid, = bl.RE(bp.scan([bl["noisy"]], bl["m1"], -0.1, 0.1, 3))
    nexus_dir = bl.paths["nexus"]
    # the file appears under its final name only once complete (written as .part, then renamed)
    path = wait_for(lambda: next((p for p in nexus_dir.iterdir()
                                  if uid[:7] in p.name and not p.name.endswith(".part")), None),
                    timeout=20, message="the NeXus file")
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry"
        assert f.attrs["file_name"] == str(path)
        assert f["entry"].attrs["default"] in f["entry"]
    assert not [p for p in nexus_dir.iterdir() if p.name.endswith(".part")]
    assert uid in bl.cat

