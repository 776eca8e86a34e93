"""Issue 8: processes editing ``happi_db.json`` through happi's client at the same time
leave a valid database with every edit, or a clear conflict; a reader parsing the
file in a loop meanwhile never sees half a file.  Real processes, bounded waits.
"""
from __future__ import annotations

import json
import selectors
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loader.happi_db import read_database
from loader.validation import check_entries

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
TIMEOUT = 120.0


def start(script: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=TIMEOUT) or proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise AssertionError(f"{script} did not start: {proc.stderr.read()}")
    return proc


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, out + err
    return json.loads(out.strip().splitlines()[-1])


def run_together(db: Path, name_lists: list[list[str]], plain: bool = False) -> tuple[list[dict], dict]:
    """Writers (one per name list) released at once, with a reader running throughout."""
    reader = start("happi_reader.py", str(db))
    writers = [start("happi_writer.py", str(db), ",".join(names), *(["plain"] if plain else []))
               for names in name_lists]
    try:
        for w in writers:                     # all are waiting: release them together
            w.stdin.write("go\n")
            w.stdin.flush()
        results = [finish(w) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    out, err = reader.communicate(timeout=TIMEOUT)        # closes its stdin: the reader stops
    assert reader.returncode == 0, f"the reader saw a broken file: {out}{err}"
    return results, json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", path)
    return path


def assert_valid(db: Path) -> dict:
    database = read_database(db)
    assert database.problems == [] and check_entries(database) == []
    return database.docs


def test_concurrent_writers_keep_every_edit(db):
    original = set(json.loads(db.read_text()))
    names = [[f"w{w}m{i}" for i in range(25)] for w in range(3)]
    results, reader = run_together(db, names)
    assert [r["added"] for r in results] == names and all(not r["conflicts"] for r in results)
    docs = assert_valid(db)
    assert set(docs) == original | {n for ns in names for n in ns}          # nothing lost
    assert docs["w2m24"]["prefix"] == "gp:w2m24" and docs["w2m24"]["beamline"] == "training"
    assert reader["reads"] > 0 and reader["sizes"] > 1      # it read while the file was changing
    assert not list(db.parent.glob("_*_happi_db.json")), "temporary files left behind"


def test_same_name_from_two_processes_is_a_clear_conflict(db):
    names = [f"c{i}" for i in range(15)]
    results, _ = run_together(db, [names, names])
    added = [n for r in results for n in r["added"]]
    conflicts = [c for r in results for c in r["conflicts"]]
    assert sorted(added) == sorted(names)                    # each name added exactly once
    assert len(conflicts) == len(names)
    assert all("already exists" in c for c in conflicts), conflicts
    docs = assert_valid(db)
    assert all(n in docs for n in names)


def test_plain_happi_writers_never_leave_half_a_file(db):
    """happi's own backend renames a complete file into place: readers are safe even
    without our lock (edits may be lost there: use loader.happi_edit for writes)."""
    results, reader = run_together(db, [[f"p{w}m{i}" for i in range(15)] for w in range(2)], plain=True)
    assert all(not r["conflicts"] for r in results)
    assert_valid(db)
    assert reader["reads"] > 0


def test_lock_wait_is_bounded(db):
    from loader.happi_edit import DatabaseLockTimeout, exclusive_lock, open_client
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from loader.happi_edit import exclusive_lock\n"
         f"with exclusive_lock({str(db)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        client = open_client(db, lock_timeout=0.5)
        item = client.create_item("beamline.containers.BeamlineItem", name="late", beamline="training",
                                  device_class="ophyd.EpicsMotor", prefix="gp:m1", labels=["motor"])
        before = db.read_bytes()
        with pytest.raises(DatabaseLockTimeout, match="another process has held"):
            client.add_item(item)
        assert db.read_bytes() == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with exclusive_lock(db, timeout=5):     # released when its holder exits
        pass
