"""``beamline demo training`` end to end, as a user runs it, in a subprocess."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from iocs import network

pytestmark = pytest.mark.slow

DEMO_TIMEOUT = 240


def beamline_command() -> list[str]:
    script = Path(sys.executable).with_name("beamline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "loader.cli"]


def run_demo(cwd: Path, ports: dict[str, int]) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("BEAMLINE_DATA_DIR", None)
    env.update(network.client_environment(network.address_list([ports["gp"], ports["ad"]])))
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(beamline_command() + ["demo", "training"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=DEMO_TIMEOUT)


def reported(stdout: str, label: str) -> Path:
    match = re.search(rf"{label}:\s+(\S+)", stdout)
    assert match, f"{label!r} not reported:\n{stdout}"
    return Path(match.group(1))


def test_demo_starts_its_own_iocs_records_and_stops_them(tmp_path):
    ports = {"gp": network.free_port(), "ad": network.free_port()}
    result = run_demo(tmp_path, ports)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    assert "demo finished in" in out
    assert "started" in out and "stopped the IOCs this demo started: gp, ad" in out
    for port in ports.values():                       # nothing left running
        assert not network.port_answers(port)

    data = tmp_path / "data"                           # paths.data, relative to the working dir
    spec = reported(out, "SPEC data file")
    assert spec.exists() and spec.parent == data / "spec"
    from spec2nexus.spec import SpecDataFile
    assert len(SpecDataFile(str(spec)).getScanNumbers()) >= 4

    hdf5 = reported(out, "HDF5 file")
    with h5py.File(hdf5, "r") as f:
        assert f["/entry/data/data"].shape == (1, 1024, 1024)
    assert "shape (1, 1024, 1024)" in out

    png = reported(out, "plot of the peak scans")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / ".logs" / "ipython_logger.log").exists()
    assert not list(data.glob("**/*.tmp*"))            # nothing half-written


def test_demo_uses_running_iocs_and_leaves_them_running(gp_ioc, ad_ioc, tmp_path):
    from conftest import PORTS
    result = run_demo(tmp_path, PORTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "already answers" in result.stdout
    assert "stopped the IOCs" not in result.stdout
    assert gp_ioc.running and ad_ioc.running


def test_ports_come_from_the_cli_then_the_address_list_then_the_defaults():
    from argparse import Namespace

    from iocs import DEFAULT_PORTS
    from loader.commands.demo import choose_ports
    assert choose_ports(Namespace(), {}) == DEFAULT_PORTS
    listed = {"EPICS_CA_ADDR_LIST": "127.0.0.1:45064 127.0.0.1:45066"}
    assert choose_ports(Namespace(), listed) == {"gp": 45064, "ad": 45066}
    assert choose_ports(Namespace(gp_port=47000, ad_port=None), listed) == {"gp": 47000, "ad": 45066}
    remote = {"EPICS_CA_ADDR_LIST": "10.0.0.5 10.0.0.6:5064"}     # not ours to start: defaults
    assert choose_ports(Namespace(), remote) == DEFAULT_PORTS
