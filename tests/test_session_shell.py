"""``beamline shell``: the namespace and bluesky's magics on the labels, in a real
(non-terminal) IPython shell."""
from __future__ import annotations

import pytest

from session_support import data_directory, load_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shell_and_beamline(gp_ioc_process, tmp_path_factory):
    from IPython.core.interactiveshell import InteractiveShell

    from loader.commands.shell import build_namespace, configure_shell

    with data_directory(tmp_path_factory.mktemp("shell") / "data"):
        bl = load_training(labels=["motor", "scalers", "simulator"])
    shell = InteractiveShell.instance()
    shell.user_ns.update(build_namespace(bl))
    configure_shell(shell, bl)
    yield shell, bl
    shell.run_line_magic("logstop", "")
    InteractiveShell.clear_instance()


def test_namespace(shell_and_beamline):
    shell, bl = shell_and_beamline
    ns = shell.user_ns
    for name in ("m1", "noisy", "scaler1", "I0", "RE", "cat", "bl", "bp", "bps", "two_pass_scan"):
        assert name in ns, name
    assert ns["RE"] is bl.RE


def test_ct_scalers_prints_named_channels(shell_and_beamline, capsys):
    shell, _ = shell_and_beamline
    shell.run_line_magic("ct", "scalers")
    out = capsys.readouterr().out
    for channel in ("timebase", "I0", "diode"):
        assert channel in out, out


def test_mov_movr_wa(shell_and_beamline, capsys):
    shell, bl = shell_and_beamline
    shell.run_line_magic("mov", "m2 0.5")
    assert bl["m2"].position == pytest.approx(0.5, abs=0.01)
    shell.run_line_magic("movr", "m2 -0.2")
    assert bl["m2"].position == pytest.approx(0.3, abs=0.01)
    # seen once in a full run: a connected motor whose position was None made %wa
    # raise in bluesky's formatting; say which motor and in what state if it recurs
    unknown = {m.name: {"connected": m.connected, "readback": m.user_readback._readback,
                        "pv_value": m.user_readback._read_pv._args.get("value"),
                        "pending": list(map(str, m._required_for_connection))}
               for m in bl.labels["motor"] if m.position is None}
    assert not unknown, f"motors without a position after the load: {unknown}"
    capsys.readouterr()
    shell.run_line_magic("wa", "motor")
    out = capsys.readouterr().out
    assert "m2" in out and "0.3" in out


def test_console_log_in_logs(shell_and_beamline):
    shell, bl = shell_and_beamline
    shell.run_cell("1 + 1", store_history=True)
    log = bl.paths["logs"] / "ipython_console.log"
    assert shell.logger.log_active and shell.logger.logfname == str(log)
    assert log.exists()
