"""Issue 8, bad input: every mistake a user can make in happi_db.json, the beamline
YAML, an installed plugin or a setup value gives a clear message naming the file
and the place, a non-zero exit from ``beamline validate``, and leaves every file
byte-identical.  Each case is a real file, written the way a person would get it
wrong.  The plugin cases pip-install a tiny distribution; the CA cases load the
beamline against the real simulated gp IOC.
"""
from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from ca_helpers import ca_value

from loader.cli import main

ROOT = Path(__file__).resolve().parent.parent
BEAMLINE = Path(sys.executable).parent / "beamline"       # the console script


# -- helpers -------------------------------------------------------------------

def copy_config(tmp_path: Path) -> tuple[Path, Path]:
    """training.yml + happi_db.json in ``tmp_path``, the YAML pointing at the copy."""
    db = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", db)
    cfg = tmp_path / "training.yml"
    text = (ROOT / "instrument_config" / "training.yml").read_text()
    cfg.write_text(text.replace("happi: ../happi_db.json", "happi: happi_db.json"))
    return cfg, db


def snapshot(directory: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def validate_in_process(cfg: Path, capsys) -> tuple[int, str]:
    """``beamline validate --config cfg``; asserts no file changed."""
    before = snapshot(cfg.parent)
    code = main(["validate", "--config", str(cfg)])
    assert snapshot(cfg.parent) == before, "validate must leave every file byte-identical"
    out = capsys.readouterr()
    return code, out.out + out.err


def validate_console_script(cfg: Path) -> tuple[int, str]:
    """The installed ``beamline`` console script, as a user runs it."""
    before = snapshot(cfg.parent)
    done = subprocess.run([str(BEAMLINE), "validate", "--config", str(cfg)], capture_output=True,
                          text=True, cwd=cfg.parent, timeout=120)
    assert snapshot(cfg.parent) == before, "validate must leave every file byte-identical"
    return done.returncode, done.stdout + done.stderr


def line_of(path: Path, text: str, after: int = 0) -> int:
    """1-based line of the first line containing ``text`` (after line ``after``)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line and i > after)


def entry_block(text: str, name: str) -> tuple[int, int]:
    """Character span of entry ``name`` in the JSON text (indent 4, as happi writes)."""
    start = text.index(f'\n    "{name}": {{')
    end = text.index("\n    }", start) + len("\n    }")
    return start, end


def edit_entry(db: Path, name: str, change: Callable[[dict], None]) -> None:
    """Change one entry, keeping the rest of the file as written (happi's layout)."""
    docs = json.loads(db.read_text())
    change(docs[name])
    db.write_text(json.dumps(docs, indent=4, sort_keys=True))


# -- happi JSON ----------------------------------------------------------------

def rename(db: Path, old: str, new: str) -> None:
    """Rename an entry the way a person would: its key, ``_id`` and ``name``."""
    docs = json.loads(db.read_text())
    docs[new] = dict(docs.pop(old), _id=new, name=new)
    db.write_text(json.dumps(docs, indent=4, sort_keys=True))


def drop_comma(db: Path) -> str:
    """Delete the comma after m2's "active": true (a typical hand edit)."""
    lines = db.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == '"m2": {')
    lines[at + 2] = lines[at + 2].rstrip(",")          # "active": true,
    db.write_text("\n".join(lines) + "\n")
    # json reports the start of the next key, column of its quote
    return f"{db}:{at + 4}:9: JSON syntax error: Expecting ',' delimiter"


def pasted_twice(db: Path) -> str:
    """Copy-paste m3's block as a second "m3" key, changing only the prefix."""
    text = db.read_text()
    start, end = entry_block(text, "m3")
    block = text[start:end].replace('"gp:m3"', '"gp:m33"')
    db.write_text(text[:end] + "," + block + text[end:])
    first = text[:start + 1].count("\n") + 1
    second = text[:end].count("\n") + 2
    return f"{db}:{second}: entry 'm3': entry id 'm3' appears more than once (lines {first}, {second})"


#: name -> (edit of the file, id of the entry whose line is named, expected message parts)
HAPPI_CASES: dict[str, tuple[Callable[[Path], str | None], str | None, list[str]]] = {
    "syntax-error": (drop_comma, None, []),
    "wrong-type": (lambda db: edit_entry(db, "m2", lambda d: d.update(labels="motor")), "m2",
                   ["entry 'm2', field 'labels': expected array, got string 'motor'"]),
    "active-as-string": (lambda db: edit_entry(db, "m2", lambda d: d.update(active="yes")), "m2",
                         ["entry 'm2', field 'active': expected boolean, got string 'yes'"]),
    "missing-beamline": (lambda db: edit_entry(db, "m3", lambda d: d.pop("beamline")), "m3",
                         ["entry 'm3'", "missing required key 'beamline'"]),
    "missing-device_class": (lambda db: edit_entry(db, "m4", lambda d: d.pop("device_class")), "m4",
                             ["entry 'm4'", "missing required key 'device_class'"]),
    "duplicate-name": (lambda db: edit_entry(db, "m10", lambda d: d.update(name="m1")), "m10",
                       ["entry 'm1', field 'name'", "duplicate name 'm1'"]),
    "duplicate-key": (pasted_twice, None, []),
    "name-not-identifier": (lambda db: rename(db, "m5", "m-5"), "m-5",
                            ["field 'name': 'm-5' is not valid (expected a Python identifier"]),
    "name-is-keyword": (lambda db: rename(db, "m5", "class"), "class",
                        ["field 'name'", "'class' is a Python keyword"]),
    "unknown-class": (lambda db: edit_entry(db, "m6", lambda d: d.update(device_class="ophyd.EpicsMotr")), "m6",
                      ["entry 'm6', field 'device_class': unknown class",
                       "module 'ophyd' has no 'EpicsMotr'"]),
    "unknown-module": (lambda db: edit_entry(db, "m6", lambda d: d.update(device_class="ophyd.motors.EpicsMotor")), "m6",
                       ["entry 'm6', field 'device_class': unknown class", "ophyd.motors"]),
    "module-not-allowed": (lambda db: edit_entry(db, "m7", lambda d: d.update(device_class="subprocess.Popen")), "m7",
                           ["entry 'm7', field 'device_class'",
                            "module 'subprocess' is not in allowed_modules", "refused, not imported"]),
    "args-missing-field": (lambda db: edit_entry(db, "m8", lambda d: d.update(args=["{{pv_prefix}}"])), "m8",
                           ["entry 'm8', field 'args'", "names field 'pv_prefix', which this entry does not set"]),
    "kwargs-missing-field": (lambda db: edit_entry(db, "m9", lambda d: d["kwargs"].update(name="{{nmae}}")), "m9",
                             ["entry 'm9', field 'kwargs'", "names field 'nmae'"]),
    "prefix-null-but-used": (lambda db: edit_entry(db, "m11", lambda d: d.update(prefix=None)), "m11",
                             ["entry 'm11', field 'args'", "names field 'prefix', which this entry does not set"]),
}


@pytest.mark.parametrize("case", list(HAPPI_CASES))
def test_bad_happi_entry(case, tmp_path, capsys):
    cfg, db = copy_config(tmp_path)
    breaker, at, expected = HAPPI_CASES[case]
    located = breaker(db)
    code, out = validate_in_process(cfg, capsys)
    assert code == 1, out
    if at is None:
        expected = [located]                                      # file:line:column
    else:
        expected = [f"{db}:{line_of(db, chr(34) + at + chr(34) + ': {')}: entry ", *expected]
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"


def test_bad_happi_entries_fail_the_console_script(tmp_path):
    """One file with several mistakes: all reported at once, exit status 1."""
    cfg, db = copy_config(tmp_path)
    edit_entry(db, "m2", lambda d: d.update(labels="motor"))
    edit_entry(db, "m7", lambda d: d.update(device_class="subprocess.Popen"))
    code, out = validate_console_script(cfg)
    assert code == 1
    assert "2 problem(s)" in out
    assert f"{db}:{line_of(db, chr(34) + 'm2' + chr(34))}: entry 'm2', field 'labels'" in out
    assert "module 'subprocess' is not in allowed_modules" in out
    drop_comma(db)
    code, out = validate_console_script(cfg)
    assert code == 1 and "JSON syntax error" in out and str(db) in out


# -- the beamline YAML ---------------------------------------------------------

def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


def add_setup(lines: str) -> Callable[[str], str]:
    """Add steps at the top of the ``setup:`` section."""
    return replace("setup:\n", "setup:\n" + lines)


#: name -> (edit of the YAML text, text of the line the problem is on, expected message)
YAML_CASES = {
    "syntax-error": (replace("proposal_id: training", "proposal_id: training: 2024"),
                     "proposal_id: training: 2024", ":24: YAML syntax error: mapping values are not allowed here"),
    "unclosed-bracket": (replace("auto_addr_list: false", "auto_addr_list: [false"),
                         "connection_timeout", "that starts at line 21, column 19)"),
    "unknown-key": (replace("catalog: training", "catalg: training"),
                    "catalg: training", ": catalg: unknown key 'catalg' (did you mean 'catalog'?)"),
    "unknown-nested-key": (replace("  connection_timeout: 10", "  connect_timeout: 10"),
                           "connect_timeout: 10", "unknown key 'connect_timeout' (did you mean 'connection_timeout'?)"),
    "wrong-type": (replace("connection_timeout: 10", "connection_timeout: ten"),
                   "connection_timeout: ten", ": epics.connection_timeout: expected number, got string 'ten'"),
    "labels-not-a-list": (replace("load: {lazy:", "load: {labels: motor, lazy:"),
                          "load: {labels: motor", ": load.labels: expected array, got string 'motor'"),
    "setup-not-a-list": (add_setup("  m2: {action: motor_srev, srev: 200}\n"),
                         "m2: {action: motor_srev", ": setup.m2: expected array, got object"),
    "setup-missing-device": (add_setup("  m99:\n    - action: motor_srev\n      srev: 200\n"),
                             "m99:", "setup for 'm99', which is not a device of beamline 'training'"),
    "setup-unknown-action": (add_setup("  m2:\n    - action: motor_srv\n      srev: 200\n"),
                             "action: motor_srv", "unknown setup action 'motor_srv' (did you mean 'motor_srev'?)"),
    "setup-unknown-option": (replace("      srev: 2000", "      steps: 2000"),
                             "steps: 2000", "motor_srev: unknown key 'steps'"),
    "channel-out-of-range": (replace("        12: roi2", "        12: roi2\n        33: roi3"),
                             "33: roi3", "scaler_channels: '33' is not valid (expected a channel number 1..32)"),
    "channel-zero": (replace("        1: timebase", "        0: timebase"),
                     "0: timebase", "scaler_channels: '0' is not valid (expected a channel number 1..32)"),
    "channel-name-not-identifier": (replace("        5: I00", "        5: I0 reference"),
                                    "5: I0 reference", "'I0 reference' is not valid"),
    "unknown-catalog": (replace("catalog: training", "catalog: trainig"),
                        "catalog: trainig", ": catalog: unknown catalog 'trainig' (did you mean 'training'?)"),
    "unknown-callback": (replace("- name: spec", "- name: spek"),
                         "- name: spek", "unknown callback 'spek' (did you mean 'spec'?)"),
    "scan-rate-not-a-menu-choice": (replace("scan: 2 second", "scan: 2 seconds"),
                                    "scan: 2 seconds", "temperature_swait: expected"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_bad_yaml(case, tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    edit, where, message = YAML_CASES[case]
    cfg.write_text(edit(cfg.read_text()))
    code, out = validate_in_process(cfg, capsys)
    assert code == 1, out
    line = line_of(cfg, where)
    assert f"{cfg}:{line}" in out, f"line {line} of {cfg} not named in:\n{out}"
    assert message in out, f"{message!r} not in:\n{out}"


def test_bad_yaml_fails_the_console_script(tmp_path):
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(replace("catalog: training", "catalg: training")(cfg.read_text()))
    code, out = validate_console_script(cfg)
    assert code == 1
    assert f"{cfg}:{line_of(cfg, 'catalg:')}: catalg: unknown key 'catalg' (did you mean 'catalog'?)" in out
    cfg.write_text(replace("proposal_id: training", "proposal_id: training: 2024")(cfg.read_text()))
    code, out = validate_console_script(cfg)
    assert code == 1 and f"{cfg}:{line_of(cfg, 'proposal_id')}:24: YAML syntax error" in out


def test_load_refuses_a_yaml_syntax_error_and_writes_nothing(tmp_path):
    from loader import load_beamline
    from loader.problems import ConfigError
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(replace("proposal_id: training", "proposal_id: training: 2024")(cfg.read_text()))
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(f"{cfg}:{line_of(cfg, 'proposal_id')}:24")):
        load_beamline("training", config=cfg, session=False)
    assert snapshot(tmp_path) == before


# -- plugins from other distributions ------------------------------------------

PLUGIN_SRC = ROOT / "tests" / "plugins" / "bad_plugins"
PLUGIN_DIST = "beamline-test-bad-plugins"
PLUGIN_MODULES = ("beamline_test_bad_plugins", "beamline_test_broken_plan")


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def bad_plugins(tmp_path_factory):
    """pip-install the misbehaving plugins (plans, callbacks, setups); uninstalled afterwards."""
    source = tmp_path_factory.mktemp("bad_plugins") / "bad_plugins"
    shutil.copytree(PLUGIN_SRC, source)           # the build writes beside its source
    done = pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    assert done.returncode == 0, done.stdout + done.stderr
    importlib.invalidate_caches()
    try:
        yield PLUGIN_DIST
    finally:
        pip("uninstall", "-y", PLUGIN_DIST)
        for module in PLUGIN_MODULES:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()


def test_bad_plugins_are_reported_and_skipped(bad_plugins):
    from loader.plugins import (CALLBACKS, PLANS, SETUPS, load_group, must_be_callable,
                                must_be_generator_function)
    plans, plan_errors = load_group(PLANS, must_be_generator_function)
    reasons = {e.name: str(e) for e in plan_errors}
    assert "broken_plan" in reasons and "import failed: RuntimeError: this plan module is broken" in reasons["broken_plan"]
    assert "not_a_plan" in reasons and "expected a plan (generator function), got int" in reasons["not_a_plan"]
    assert PLUGIN_DIST in reasons["not_a_plan"]
    assert {"two_pass_scan", "findpeak_multipass"} <= set(plans)          # the rest still load
    callbacks, callback_errors = load_group(CALLBACKS, must_be_callable)
    [error] = [e for e in callback_errors if e.name == "not_a_callback"]
    assert "expected a callable, got dict" in error.reason
    assert {"catalog", "spec"} <= set(callbacks)
    actions, setup_errors = load_group(SETUPS, must_be_callable)
    assert "wrong_return" in actions                  # callable: only its result is wrong
    [error] = [e for e in setup_errors if e.name == "not_an_action"]
    assert "expected a callable, got str" in error.reason


def test_validate_names_unusable_plugins(bad_plugins, tmp_path):
    cfg, _ = copy_config(tmp_path)
    text = add_setup("  m2:\n    - action: not_an_action\n")(cfg.read_text())
    text = replace("  - name: nexus", "  - name: not_a_callback\n    enabled: true\n  - name: nexus")(text)
    cfg.write_text(text)
    code, out = validate_console_script(cfg)
    assert code == 1
    line = line_of(cfg, "action: not_an_action")
    assert f"{cfg}:{line}: setup.m2[0].action: setup action 'not_an_action' is installed but unusable: " \
           "expected a callable, got str" in out
    line = line_of(cfg, "name: not_a_callback")
    assert f"{cfg}:{line}: callbacks[" in out and \
           "callback 'not_a_callback' is installed but unusable: expected a callable, got dict" in out


def test_load_skips_bad_plugins(bad_plugins, gp_ioc, tmp_path):
    """Through the loader and the session: reported, skipped, the rest works."""
    from session_support import data_directory

    from loader import load_beamline
    cfg, _ = copy_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    config["setup"] = {"noisy": [{"action": "wrong_return"}], "m1": [{"action": "not_an_action"}]}
    config["callbacks"] = [{"name": "catalog"}, {"name": "not_a_callback"}, {"name": "wrong_callback"}]
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    with data_directory(tmp_path / "data"):
        bl = load_beamline("training", config=cfg, labels=["simulator", "motor"], timeout=20)
        rows = {r.name: r for r in bl.status()}
        assert rows["noisy"].state == "setup failed"
        assert "wrong_return" in rows["noisy"].reason and "returned list, expected a mapping" in rows["noisy"].reason
        assert rows["m1"].state == "setup failed" and "expected a callable, got str" in rows["m1"].reason
        assert rows["m2"].state == "ready"
        problems = "\n".join(bl.session.problems)
        assert "broken_plan" in problems and "not_a_plan" in problems and "not_a_callback" in problems
        assert "two_pass_scan" in bl.plans and "broken_plan" not in bl.plans
        assert "catalog" in bl.callbacks and "not_a_callback" not in bl.callbacks
        assert "wrong_callback" not in bl.callbacks and "wrong_callback" in problems


def test_callback_factory_returning_a_non_callback(bad_plugins, tmp_path):
    """A factory that returns a string is reported and nothing is subscribed."""
    from bluesky import RunEngine

    from loader.session import subscribe_callbacks
    RE = RunEngine({})
    before = sum(len(v) for v in RE.dispatcher.cb_registry.callbacks.values())
    made, problems = subscribe_callbacks(None, RE, [{"name": "wrong_callback"}])
    assert "wrong_callback" not in made
    assert any("wrong_callback" in p and "not a callback" in p for p in problems), problems
    assert sum(len(v) for v in RE.dispatcher.cb_registry.callbacks.values()) == before


# -- values a setup action writes over Channel Access ---------------------------

LONG_PV = "gp:userCalc10_reference_channel_for_peak.VAL"     # 44 characters: a real-looking name


#: name -> (device, setup step, labels to load, PV the action must not have changed, expected in reason)
CA_CASES = {
    "pv-name-too-long": ("noisy", {"action": "lorentzian_swait", "reference": LONG_PV},
                         ["simulator"], "gp:userCalc1.INAN",
                         [f"reference PV name {LONG_PV!r} is {len(LONG_PV)} characters",
                          "EPICS STRING field gp:userCalc1.INAN (expected at most 39 characters)"]),
    "srev-not-a-number": ("m1", {"action": "motor_srev", "srev": "abc"}, ["motor"], "gp:m1.SREV",
                          ["srev 'abc' for field gp:m1.SREV: expected an integer"]),
    "setpoint-not-a-number": ("temperature", {"action": "temperature_swait", "setpoint": "warm"},
                              ["positioner"], "gp:userCalc8.B",
                              ["setpoint 'warm': 'warm' is not a number; field gp:userCalc8.B is numeric (expected a number)"]),
}


@pytest.mark.parametrize("case", list(CA_CASES))
def test_bad_setup_value_is_refused_not_truncated(case, gp_ioc, tmp_path):
    from loader import load_beamline
    device, step, labels, pv, expected = CA_CASES[case]
    cfg, _ = copy_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    config["setup"] = {device: [step]}
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))

    # caught statically
    code, out = validate_console_script(cfg)
    assert code == 1
    assert f"{cfg}:{line_of(cfg, device + ':', line_of(cfg, 'setup:'))}" in out or f"setup.{device}[0]" in out
    assert f"setup.{device}[0]" in out and step["action"] in out

    # and at load time, against the IOC: which device, which action, which field, what was expected
    before = ca_value(pv)
    bl = load_beamline("training", config=cfg, labels=labels, session=False, timeout=20)
    row = {r.name: r for r in bl.status()}[device]
    assert row.state == "setup failed"
    assert f"setup[0] {step['action']}: SetupValueError" in row.reason
    for text in expected:
        assert text in row.reason, f"{text!r} not in {row.reason!r}"
    assert device not in bl.devices
    after = ca_value(pv)
    assert after == before, f"{pv} changed: {before!r} -> {after!r}"
