"""`beamline validate` / `devices` on good and bad data: every problem reported
at once with its place, the right exit code, and files byte-identical afterwards.
No IOC needed."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from loader.cli import main
from loader.validation import validate

ROOT = Path(__file__).resolve().parent.parent


def copy_config(tmp_path: Path) -> tuple[Path, Path]:
    """training.yml + happi_db.json copied to tmp_path (the YAML pointing at the copy)."""
    db = tmp_path / "happi_db.json"
    shutil.copy(ROOT / "happi_db.json", db)
    text = (ROOT / "instrument_config" / "training.yml").read_text()
    cfg = tmp_path / "training.yml"
    cfg.write_text(text.replace("happi: ../happi_db.json", "happi: happi_db.json"))
    return cfg, db


def edit_db(db: Path, change) -> None:
    docs = json.loads(db.read_text())
    change(docs)
    db.write_text(json.dumps(docs, indent=4, sort_keys=True))


def run_validate(cfg: Path, capsys) -> tuple[int, str]:
    """Run the CLI in-process; the files must be byte-identical afterwards."""
    before = {p: p.read_bytes() for p in cfg.parent.iterdir() if p.is_file()}
    code = main(["validate", "--config", str(cfg)])
    after = {p: p.read_bytes() for p in cfg.parent.iterdir() if p.is_file()}
    assert after == before, "validate must not write, create or delete files"
    out = capsys.readouterr()
    return code, out.out + out.err


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_shipped_training_config_is_clean(capsys):
    code = main(["validate", "training"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "24 entries, no problems" in out


def test_console_script_exit_codes(tmp_path):
    import subprocess
    cfg, db = copy_config(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "loader.cli", "validate", "--config", str(cfg)],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    edit_db(db, lambda d: d["m2"].update(labels="motor"))
    bad = subprocess.run([sys.executable, "-m", "loader.cli", "validate", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 1
    assert "entry 'm2', field 'labels'" in bad.stderr


def test_bad_happi_entries_all_reported(tmp_path, capsys):
    cfg, db = copy_config(tmp_path)

    def break_entries(d):
        d["m2"]["labels"] = "motor"                      # wrong type
        del d["m3"]["beamline"]                          # missing required field
        del d["m4"]["device_class"]
        d["bad-name"] = dict(d["m5"], _id="bad-name", name="bad-name", prefix="gp:m55")
        d["m6"]["kwargs"] = {"name": "{{name}}", "pv": "{{ missing_field }}"}
        d["m7"]["kwargs"] = {"name": "{{ ''.__class__.__mro__ }}"}   # no expressions in templates
        d["m8"]["device_class"] = "ophyd.NoSuchMotor"    # unknown class
        d["m9"]["lables"] = ["motor"]                    # a typo in a field name
        d["m10"]["name"] = "m1"                          # duplicate name
    edit_db(db, break_entries)
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert "entry 'm2', field 'labels': expected array, got string 'motor'" in out
    assert "entry 'm3'" in out and "missing required key 'beamline'" in out
    assert "entry 'm4'" in out and "missing required key 'device_class'" in out
    assert "entry 'bad-name', field 'name': 'bad-name' is not valid (expected a Python identifier" in out
    assert "entry 'm6'" in out and "names field 'missing_field'" in out
    assert "entry 'm7'" in out and "only plain {{field}} placeholders are allowed" in out
    assert "unknown class" in out and "ophyd.NoSuchMotor" in out
    assert "unknown field 'lables' (did you mean 'labels'?)" in out
    assert "duplicate name 'm1'" in out
    m2_line = line_of(db, '"m2": {')
    assert f"{db}:{m2_line}: entry 'm2'" in out   # entries are located by line too


def test_json_syntax_error_has_line_and_column(tmp_path, capsys):
    cfg, db = copy_config(tmp_path)
    lines = db.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.endswith(",") and i > 3)
    lines[index] = lines[index][:-1]                     # drop a comma
    db.write_text("\n".join(lines))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert f"{db}:{index + 2}:" in out and "JSON syntax error: Expecting ',' delimiter" in out


def test_yaml_wrong_type_and_unknown_key(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    text = cfg.read_text().replace("connection_timeout: 10", "connection_timeout: ten")
    text = text.replace("catalog: training", "catalg: training")
    text = text.replace("- name: spec", "- name: spek")
    cfg.write_text(text)
    code, out = run_validate(cfg, capsys)
    assert code == 1
    line = line_of(cfg, "connection_timeout: ten")
    assert f"{cfg}:{line}: epics.connection_timeout: expected number, got string 'ten'" in out
    line = line_of(cfg, "catalg:")
    assert f"{cfg}:{line}: catalg: unknown key 'catalg' (did you mean 'catalog'?)" in out
    line = line_of(cfg, "- name: spek")
    assert f"{cfg}:{line}: callbacks[1].name: unknown callback 'spek' (did you mean 'spec'?)" in out


def test_unknown_catalog(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("catalog: training", "catalog: trainin"))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    line = line_of(cfg, "catalog: trainin")
    assert f"{cfg}:{line}: catalog: unknown catalog 'trainin' (did you mean 'training'?)" in out


def test_yaml_syntax_error_has_line(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("  auto_addr_list: false", "  auto_addr_list: [false"))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert "YAML syntax error" in out and f"{cfg}:" in out


def test_setup_cross_checks(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    config = yaml.safe_load(cfg.read_text())
    config["setup"]["m99"] = [{"action": "motor_srev", "srev": 200}]        # no such device
    config["setup"]["m2"] = [{"action": "motor_srv", "srev": 200}]         # no such action
    config["setup"]["scaler1"][0]["channels"][40] = "far"                   # channel out of range
    config["setup"]["m1"][0]["srev"] = "many"                               # wrong option type
    config["load"] = {"labels": ["motor", "motors"]}                       # a label nobody has
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert "setup for 'm99', which is not a device of beamline 'training'" in out
    assert "unknown setup action 'motor_srv' (did you mean 'motor_srev'?)" in out
    assert "scaler_channels: '40' is not valid (expected a channel number 1..32)" in out
    assert "setup.m1[0].srev: motor_srev: expected integer, got string 'many'" in out
    assert "no entry of beamline 'training' has label 'motors'" in out


def test_duplicate_prefix_is_reported(tmp_path, capsys):
    cfg, db = copy_config(tmp_path)
    edit_db(db, lambda d: d.update(m5b=dict(d["m5"], _id="m5b", name="m5b")))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert "entry 'm5b', field 'prefix'" in out
    assert "duplicate prefix" in out


def test_disallowed_module_is_refused_and_never_imported(tmp_path, capsys, monkeypatch):
    cfg, db = copy_config(tmp_path)
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Thing: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_db(db, lambda d: d["m2"].update(device_class="evil_module.Thing"))
    code, out = run_validate(cfg, capsys)
    assert code == 1
    assert "entry 'm2', field 'device_class'" in out
    assert "module 'evil_module' is not in allowed_modules ['ophyd', 'apstools', 'loader.devices']" in out
    assert not marker.exists() and "evil_module" not in sys.modules


def test_report_locates_every_problem(tmp_path):
    """The API behind the CLI: problems carry scope, file, line / entry and field."""
    cfg, db = copy_config(tmp_path)
    edit_db(db, lambda d: d["m2"].update(active="yes"))
    report = validate(config=cfg)
    [problem] = report.problems
    assert (problem.scope, problem.device, problem.path) == ("entry", "m2", "active")
    assert problem.file == str(db) and problem.line == line_of(db, '"m2": {')
    assert report.entry_reasons() == {"m2": ["active: expected boolean, got string 'yes'"]}


def test_config_search_order(tmp_path, monkeypatch):
    from loader.config import CONFIG_ENV, find_config
    cfg, _ = copy_config(tmp_path)
    assert find_config("training") == (ROOT / "instrument_config" / "training.yml").resolve()
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path))
    assert find_config("training") == cfg.resolve()
    assert find_config("anything", path=cfg) == cfg.resolve()
    with pytest.raises(FileNotFoundError, match="no configuration for beamline 'nosuch'"):
        find_config("nosuch")


def test_devices_table(capsys):
    assert main(["devices", "training"]) == 0
    out = capsys.readouterr().out
    header, rule, *rows = out.splitlines()
    assert header.split()[:3] == ["name", "class", "labels"] and "PV prefix" in header
    names = [r.split()[0] for r in rows]
    assert names[:5] == ["adsimdet", "calcouts", "calcs", "gp_stats", "m1"]
    assert "m16" in names and "temperature" in names and "shutter" in names
    m1 = next(r for r in rows if r.startswith("m1 "))
    assert "loader.devices.motor.EpicsMotorWithSREV" in m1 and "gp:m1" in m1 and "motor" in m1
    assert any(r.startswith("timebase, I0, scint, diode") for r in rows)


def test_epics_section_gives_defaults_the_environment_overrides():
    from loader.epics_env import apply_epics_defaults
    epics = {"addr_list": ["127.0.0.1:5064", "127.0.0.1:5066"], "auto_addr_list": False,
             "max_array_bytes": 50000000}
    environ = {"EPICS_CA_ADDR_LIST": "127.0.0.1:40000"}
    applied = apply_epics_defaults(epics, environ)
    assert environ["EPICS_CA_ADDR_LIST"] == "127.0.0.1:40000"          # the environment wins
    assert applied == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_MAX_ARRAY_BYTES": "50000000"}
    assert environ["EPICS_CA_AUTO_ADDR_LIST"] == "NO"


def test_templates_substitute_fields_only():
    from loader import templates
    fields = {"name": "m1", "prefix": "gp:m1", "labels": ["motor"]}
    assert templates.fill(["{{prefix}}", {"labels": "{{ labels }}", "x": "{{name}}_y"}], fields) == \
        ["gp:m1", {"labels": ["motor"], "x": "m1_y"}]
    for bad in ("{{ prefix.upper() }}", "{% for x in y %}{% endfor %}", "{{ name|upper }}", "{{''.__class__}}"):
        with pytest.raises(templates.TemplateError):
            templates.fill(bad, fields)


def test_load_refuses_a_broken_config_before_any_device(tmp_path):
    """Config-level problems stop load_beamline with every problem listed (no CA needed)."""
    from loader import load_beamline
    from loader.problems import ConfigError
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("connection_timeout: 10", "connection_timeout: -1"))
    with pytest.raises(ConfigError) as info:
        load_beamline("training", config=cfg, session=False)
    line = line_of(cfg, "connection_timeout: -1")
    assert f"{cfg}:{line}: epics.connection_timeout" in str(info.value)
    with pytest.raises(ConfigError, match=r"has label 'motr' \(did you mean 'motor'\?\)"):
        load_beamline("training", labels=["motr"], session=False)


def test_duplicate_yaml_key_is_reported(tmp_path, capsys):
    cfg, _ = copy_config(tmp_path)
    cfg.write_text(cfg.read_text() + "\ncatalog: training\n")
    code, out = run_validate(cfg, capsys)
    assert code == 1
    first = line_of(cfg, "catalog: training")
    last = len(cfg.read_text().splitlines())
    assert f"{cfg}:{last}: catalog: duplicate key 'catalog' (first at line {first})" in out


CHECK_IMPORTS = """
import json, sys
from loader.validation import validate
report = validate(config=sys.argv[1])
print(json.dumps({"problems": [p.message for p in report.problems],
                  "imported": [m for m in ("matplotlib", "pint.util", "pandas.core", "openpyxl.workbook",
                                           "apstools.devices.lakeshore_controllers") if m in sys.modules]}))
"""


def test_validate_imports_the_classes_as_a_load_does(tmp_path):
    """``beamline validate`` imports every device class, as a load does, and, as a load,
    leaves what their libraries import but never use (matplotlib, pint, pandas, most of
    apstools) for first use: seconds less.  A class that does not exist is still reported."""
    import subprocess
    cfg, db = copy_config(tmp_path)

    def check() -> dict:
        out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, str(cfg)], capture_output=True,
                             text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert check() == {"problems": [], "imported": []}
    edit_db(db, lambda d: d["calcs"].update(device_class="apstools.synApps.NoSuchRecord"))
    out = check()
    assert len(out["problems"]) == 1 and "unknown class" in out["problems"][0]
    assert "NoSuchRecord" in out["problems"][0]
