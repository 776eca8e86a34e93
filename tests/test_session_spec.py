"""The SPEC data file written by the session is read by spec2nexus."""
from __future__ import annotations

import pytest
from bluesky import plans as bp

from session_support import data_directory, load_training

pytestmark = pytest.mark.slow


def test_spec_file_holds_the_scans_with_their_columns(gp_ioc, tmp_path):
    from spec2nexus.spec import SpecDataFile

    with data_directory(tmp_path / "data"):
        bl = load_training(labels=["simulator", "motor"])
    m1, noisy = bl["m1"], bl["noisy"]
    scan_uid, = bl.RE(bp.scan([noisy], m1, -0.2, 0.2, 5))
    count_uid, = bl.RE(bp.count([noisy], num=3))
    path = bl.callbacks["spec"].spec_filename
    assert path.parent == bl.paths["spec"]

    sdf = SpecDataFile(str(path))
    ids = {uid: bl.cat[uid].metadata["start"]["scan_id"] for uid in (scan_uid, count_uid)}
    numbers = [int(float(n)) for n in sdf.getScanNumbers()]
    assert ids[scan_uid] in numbers and ids[count_uid] in numbers

    scan = sdf.getScan(ids[scan_uid])
    scan.interpret()
    assert "m1" in scan.L and "noisy" in scan.L
    assert len(scan.data["noisy"]) == 5
    expected = bl.cat[scan_uid].primary.read()
    assert scan.data["m1"] == pytest.approx(list(expected["m1"].values))
    assert scan.data["noisy"] == pytest.approx(list(expected["noisy"].values))

    count = sdf.getScan(ids[count_uid])
    count.interpret()
    assert len(count.data["noisy"]) == 3
