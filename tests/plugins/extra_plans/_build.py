"""Minimal PEP 517 backend: packs ``extra_plans/`` into a pure-Python wheel.

Only what ``pip install <dir>`` needs (``build_wheel``); metadata comes from
``pyproject.toml``'s ``[project]`` table.
"""
from __future__ import annotations

import base64
import hashlib
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "extra_plans"


def _project() -> dict:
    with open(HERE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _dist_files(project: dict) -> dict[str, bytes]:
    name, version = project["name"], project["version"]
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                f"Summary: {project.get('description', '')}\n"
                f"Requires-Python: {project.get('requires-python', '>=3')}\n")
    wheel = "Wheel-Version: 1.0\nGenerator: extra_plans _build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry_points = ""
    for group, items in project.get("entry-points", {}).items():
        entry_points += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
    return {"METADATA": metadata.encode(), "WHEEL": wheel.encode(),
            "entry_points.txt": entry_points.encode()}


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None) -> list[str]:
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    project = _project()
    dist = project["name"].replace("-", "_")
    version = project["version"]
    filename = f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted((HERE / PACKAGE).rglob("*.py")):
        files[path.relative_to(HERE).as_posix()] = path.read_bytes()
    for name, data in _dist_files(project).items():
        files[f"{info}/{name}"] = data
    record = [_record_line(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as whl:
        for path, data in files.items():
            whl.writestr(path, data)
    return filename
