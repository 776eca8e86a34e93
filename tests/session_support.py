"""Shared by the session, catalog, plan and demo tests: load the real training
beamline (real IOCs from conftest's fixtures) with its data in a temporary directory."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

DATA_ENV = "BEAMLINE_DATA_DIR"
LOAD_TIMEOUT = 20.0


@contextlib.contextmanager
def data_directory(data_dir: Path):
    """``$BEAMLINE_DATA_DIR`` = ``data_dir`` and the working directory its parent
    (so ``./.logs`` lands there too); both restored afterwards."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    old_env, old_cwd = os.environ.get(DATA_ENV), os.getcwd()
    os.environ[DATA_ENV] = str(data_dir)
    os.chdir(data_dir.parent)
    try:
        yield data_dir
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = old_env


def load_training(labels=None, **kwargs):
    """``load_beamline("training")`` with a bounded connection wait; fails on a failed session."""
    from loader import load_beamline
    bl = load_beamline("training", labels=labels, timeout=LOAD_TIMEOUT, **kwargs)
    assert bl.session_error is None, bl.session_error
    return bl


def measured(RE):
    """Subscribe a collector to ``RE``: returns (documents list, unsubscribe token)."""
    docs: list[tuple[str, dict]] = []
    token = RE.subscribe(lambda name, doc: docs.append((name, doc)))
    return docs, token


def event_column(docs, key: str) -> list:
    """The values of data key ``key`` in the collected events (event pages unpacked)."""
    import event_model
    values = []
    for name, doc in docs:
        if name == "event":
            if key in doc["data"]:
                values.append(doc["data"][key])
        elif name == "event_page":
            for event in event_model.unpack_event_page(doc):
                if key in event["data"]:
                    values.append(event["data"][key])
    return values
