"""Issue 8, security: the simulated IOCs and our CA repeater listen on loopback only;
configuration can never run code (safe YAML, plain ``{{field}}`` templates, a
``device_class`` allowlist checked before anything is imported)."""
from __future__ import annotations

import ipaddress
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ca_helpers import wait_for

from iocs import network
from iocs.launcher import IocProcess
from loader.cli import main

ROOT = Path(__file__).resolve().parent.parent
BEAMLINE = Path(sys.executable).parent / "beamline"


def copy_config(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", db)
    cfg = tmp_path / "training.yml"
    cfg.write_text((ROOT / "instrument_config" / "training.yml").read_text()
                   .replace("happi: ../happi_db.json", "happi: happi_db.json"))
    return cfg, db


def edit_entry(db: Path, name: str, **fields) -> None:
    docs = json.loads(db.read_text())
    docs[name].update(fields)
    db.write_text(json.dumps(docs, indent=4, sort_keys=True))


def sockets_of(pid: int) -> list:
    return psutil.Process(pid).net_connections(kind="inet")


def assert_loopback_only(pid: int, host: str, port: int) -> None:
    """Every socket of ``pid`` is bound to ``host`` or another loopback address, and the
    server port (TCP listen + UDP search) is bound to ``host`` itself."""
    conns = sockets_of(pid)
    assert conns, "the process has no sockets"
    for c in conns:
        assert ipaddress.ip_address(c.laddr.ip).is_loopback, f"bound beyond loopback: {c}"
    listening = [c for c in conns if c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN]
    assert [(c.laddr.ip, c.laddr.port) for c in listening] == [(host, port)]
    assert any(c.type == socket.SOCK_DGRAM and (c.laddr.ip, c.laddr.port) == (host, port) for c in conns)


# -- network -------------------------------------------------------------------

def test_gp_ioc_listens_on_loopback_only(gp_ioc):
    # a record with CA links makes the IOC a CA client too: its sockets must stay on loopback
    import epics
    epics.caput("gp:userCalcOut10.INPA", "gp:m1.RBV CP", wait=True, timeout=5)
    epics.caput("gp:userCalcOut10.OUT", "gp:gp:float20", wait=True, timeout=5)
    wait_for(lambda: epics.caget("gp:userCalcOut10.INAV", as_string=True) != "Constant",
             timeout=10, message="the link to connect")
    assert_loopback_only(gp_ioc.process.pid, "127.0.0.1", gp_ioc.port)


def test_ad_ioc_listens_on_loopback_only(ad_ioc):
    assert_loopback_only(ad_ioc.process.pid, "127.0.0.1", ad_ioc.port)


def test_ioc_binds_where_it_is_told(tmp_path):
    """``--host`` is honoured (another loopback address, so nothing leaves the machine)."""
    port = network.free_port()
    ioc = IocProcess("gp", port, extra_args=["--host", "127.0.0.2"], log_path=tmp_path / "ioc.log").start()
    try:
        assert_loopback_only(ioc.process.pid, "127.0.0.2", port)
    finally:
        ioc.stop()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    assert sel.select(timeout=timeout), "no answer from the helper process"
    return proc.stdout.readline().strip()


def test_ca_repeater_we_start_binds_loopback():
    """``iocs.repeater.ensure_repeater`` (used before every IOC start) in a process of
    its own, on a port of its own, so no running repeater is disturbed."""
    port = free_udp_port()
    code = ("import sys, iocs.repeater as r\n"
            "assert r.ensure_repeater()\n"
            "print(r._started.pid, flush=True)\n"
            "sys.stdin.read()\n")
    env = dict(os.environ, EPICS_CA_REPEATER_PORT=str(port))
    helper = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        pid = int(read_line(helper, 30))
        deadline = time.monotonic() + 20
        bound = []
        while not bound and time.monotonic() < deadline:      # the repeater binds once it has started
            bound = [c for c in sockets_of(pid) if c.laddr.port == port]
        assert bound, f"the repeater (pid {pid}) did not bind UDP port {port}"
        for c in sockets_of(pid):
            assert c.laddr.ip == "127.0.0.1", f"repeater bound beyond loopback: {c}"
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
    gone, alive = psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)
    assert not alive, "the repeater outlived the process that started it"


# -- configuration cannot run code ----------------------------------------------

def test_yaml_python_tags_are_refused(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    marker = tmp_path / "yaml_ran_code"
    text = cfg.read_text().replace(
        "  facility: simulated APS",
        f"  facility: !!python/object/apply:os.system ['touch {marker}']")
    cfg.write_text(text)
    before = cfg.read_bytes()
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "python/object" in l)
    assert f"{cfg}:{line}:13: YAML tag refused" in err
    assert "python/object/apply:os.system" in err and "safe loader" in err
    from loader import load_beamline
    from loader.problems import ConfigError
    with pytest.raises(ConfigError, match="YAML tag refused"):
        load_beamline("training", config=cfg, session=False)
    assert not marker.exists() and cfg.read_bytes() == before


def test_yaml_python_object_tag_refused_by_console_script(tmp_path):
    cfg, _ = copy_config(tmp_path)
    marker = tmp_path / "yaml_ran_code"
    cfg.write_text(cfg.read_text() + f"logging: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n")
    done = subprocess.run([str(BEAMLINE), "validate", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert "YAML tag refused" in done.stderr and "python/object/new:subprocess.Popen" in done.stderr
    assert not marker.exists()


TEMPLATE_ATTACKS = [
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ self._TemplateReference__context.joiner.__init__.__globals__.os.popen('touch MARKER') }}",
    "{% for x in ().__class__.__base__.__subclasses__() %}{% endfor %}",
    "{{ prefix | attr('__class__') }}",
    "{{ name }}{{ ''.__class__.__mro__[1].__subclasses__() }}",
]


@pytest.mark.parametrize("attack", TEMPLATE_ATTACKS)
def test_json_templates_cannot_execute_code(attack, tmp_path, capsys):
    """Refused by validate and by the loader (the entry is left out); nothing runs."""
    from loader import load_beamline
    cfg, db = copy_config(tmp_path)
    marker = tmp_path / "template_ran_code"
    attack = attack.replace("MARKER", str(marker))
    edit_entry(db, "shutter", kwargs={"name": attack})
    before = db.read_bytes()
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "entry 'shutter', field 'kwargs'" in err
    assert "only plain {{field}} placeholders are allowed (no expressions, filters, attributes or blocks)" in err
    bl = load_beamline("training", config=cfg, labels=["shutters"], session=False, timeout=5)
    row = {r.name: r for r in bl.status()}["shutter"]
    assert row.state == "invalid entry" and "only plain {{field}} placeholders" in row.reason
    assert "shutter" not in bl.devices
    assert not marker.exists() and db.read_bytes() == before


def write_marker_module(directory: Path, module: str) -> Path:
    """A module that leaves a file behind if it is ever imported."""
    marker = directory / f"{module}.imported"
    (directory / f"{module}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "class Device:\n    def __init__(self, *args, **kwargs): pass\n")
    return marker


@pytest.mark.parametrize("module", ["evil_plugin", "ophydx", "apstools_extra"])
def test_device_class_outside_allowlist_is_never_imported(module, tmp_path, monkeypatch, capsys):
    """Even when the module is importable and its name starts like an allowed one."""
    from loader import load_beamline
    cfg, db = copy_config(tmp_path)
    code_dir = tmp_path / "site"
    code_dir.mkdir()
    marker = write_marker_module(code_dir, module)
    monkeypatch.syspath_prepend(str(code_dir))
    edit_entry(db, "shutter", device_class=f"{module}.Device")
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"entry 'shutter', field 'device_class': device_class '{module}.Device': module {module!r} " \
           "is not in allowed_modules" in err and "refused, not imported" in err
    bl = load_beamline("training", config=cfg, labels=["shutters"], session=False, timeout=5)
    row = {r.name: r for r in bl.status()}["shutter"]
    assert row.state != "ready" and "not in allowed_modules" in row.reason
    assert not marker.exists() and module not in sys.modules


def test_console_script_never_imports_a_refused_class(tmp_path):
    """The same through ``beamline validate`` in a fresh process that *could* import it."""
    cfg, db = copy_config(tmp_path)
    code_dir = tmp_path / "site"
    code_dir.mkdir()
    marker = write_marker_module(code_dir, "evil_plugin")
    edit_entry(db, "m3", device_class="evil_plugin.Device")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code_dir), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([str(BEAMLINE), "validate", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 1 and "refused, not imported" in done.stderr
    assert not marker.exists()
    ok = subprocess.run([sys.executable, "-c", "import evil_plugin"], env=env, cwd=tmp_path, timeout=60)
    assert ok.returncode == 0 and marker.exists()      # the module really was importable
