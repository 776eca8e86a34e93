"""Databroker catalogs declared as intake YAML in ``catalogs/``.

``databroker.catalog`` is built when databroker is imported, from the
``intake.catalogs`` entry points among others.  This project declares
``training = loader.catalogs:training``; intake resolves it with ``getattr`` on
this module each time ``databroker.catalog["training"]`` is looked up, and the
module-level ``__getattr__`` below answers with the catalog for the *current*
data directory: the one the running session uses (:func:`use_data_dir`), else
``$BEAMLINE_DATA_DIR``, else ``./data``.  So the same name works in the session,
in a fresh ``python`` and in a Jupyter kernel.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .first_use import MadeAtFirstUse

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalogs"
DATA_DIR_ENV = "BEAMLINE_DATA_DIR"
DEFAULT_DATA_DIR = "data"
RUNS_SUBDIR = "catalog"          # <data_dir>/catalog/<uid>.msgpack

_session_dirs: dict[str, Path] = {}
_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


class CatalogNotFound(KeyError):
    """No YAML file in ``catalogs/`` declares a source of that name."""


#: intake driver names of databroker's file-backed (msgpack) catalog
MSGPACK_DRIVERS = frozenset({"bluesky-msgpack-catalog", "databroker._drivers.msgpack.BlueskyMsgpackCatalog"})


def _declarations(catalog_dir: Path = CATALOG_DIR) -> dict[str, tuple[Path, dict]]:
    """Source name -> (the YAML file declaring it, its entry), for every ``catalogs/*.yml``."""
    import yaml
    found: dict[str, tuple[Path, dict]] = {}
    for path in sorted(catalog_dir.glob("*.yml")):
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        for name, source in (doc.get("sources") or {}).items():
            found.setdefault(name, (path, source if isinstance(source, dict) else {}))
    return found


def declared_sources(catalog_dir: Path = CATALOG_DIR) -> dict[str, Path]:
    """Source name -> the YAML file declaring it, for every ``catalogs/*.yml``."""
    return {name: path for name, (path, _) in _declarations(catalog_dir).items()}


def _declaration(name: str) -> tuple[Path, dict]:
    """The YAML file declaring source ``name`` and its entry; ``CatalogNotFound`` if none."""
    found = _declarations()
    if name not in found:
        raise CatalogNotFound(f"no catalog {name!r} in {CATALOG_DIR} (found: {sorted(found)})")
    return found[name]


def use_data_dir(data_dir: str | os.PathLike, name: str = "training") -> Path:
    """Point catalog ``name`` at ``data_dir`` for this process (the session calls this)."""
    path = Path(data_dir).expanduser().resolve()
    _session_dirs[name] = path
    return path


def current_data_dir(name: str = "training") -> Path:
    """Where catalog ``name`` keeps its runs now."""
    if name in _session_dirs:
        return _session_dirs[name]
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()


def declared_runs_directory(name: str = "training", data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where the file-backed catalog ``name`` reads its runs, from its YAML alone.

    Why: intake resolves every driver of a catalog file when it parses it, which
    imports databroker, xarray and pandas (1-2 s); the catalog writer needs only
    the directory, at a session's first run.  ``None`` unless the source is
    databroker's msgpack driver with one ``paths`` pattern made of plain
    ``{{ data_dir }}``/``{{ CATALOG_DIR }}`` placeholders and an absolute result:
    anything else is for intake itself to render (:func:`open_catalog`).
    """
    from . import templates
    yaml_path, source = _declaration(name)
    paths = (source.get("args") or {}).get("paths")
    if source.get("driver") not in MSGPACK_DRIVERS or not isinstance(paths, list) or len(paths) != 1:
        return None
    fields = {"CATALOG_DIR": str(yaml_path.parent)}
    if "data_dir" in (source.get("parameters") or {}):      # as open_catalog passes it
        directory = Path(data_dir).expanduser().resolve() if data_dir else current_data_dir(name)
        fields["data_dir"] = str(directory)
    try:
        pattern = templates.fill(paths[0], fields)
    except templates.TemplateError:
        return None
    if not isinstance(pattern, str) or not os.path.isabs(pattern):
        return None
    return Path(os.path.dirname(pattern))


def runs_directory(data_dir: str | os.PathLike) -> Path:
    """The directory the file-backed catalog reads (and the catalog writer writes)."""
    return Path(data_dir) / RUNS_SUBDIR


def open_catalog(name: str = "training", data_dir: str | os.PathLike | None = None):
    """The databroker catalog ``name``, as declared in ``catalogs/``.

    File-backed sources get ``data_dir`` (default :func:`current_data_dir`); one catalog
    object per (name, directory) is kept, so repeated look-ups do not re-read
    every run file.
    """
    import intake
    yaml_path, _ = _declaration(name)
    directory = Path(data_dir).expanduser().resolve() if data_dir else current_data_dir(name)
    key = (name, str(directory))
    with _lock:
        if key not in _cache:
            entry = intake.open_catalog(str(yaml_path)).walk(depth=1)[name]
            parameters = {p["name"] for p in entry.describe().get("user_parameters", [])}
            kwargs = {"data_dir": str(directory)} if "data_dir" in parameters else {}
            _cache[key] = entry(**kwargs)
    from . import xarray_pint
    xarray_pint.install()           # the first read does not import pint just to rule it out
    return _cache[key]


class DeferredCatalog(MadeAtFirstUse):
    """Stands in for catalog ``name`` until it is first used, then forwards to it.

    Opening a databroker catalog imports databroker's drivers (xarray, pandas,
    dask: ~0.5 s); a session that only records runs never reads them, so the
    session's ``bl.cat`` opens on first use (``cat[-1]``, ``len(cat)``,
    ``cat.v1``, ...).  ``open()`` returns the catalog itself.
    """

    def __init__(self, name: str, data_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self._name = name
        self._data_dir = data_dir

    def _make(self) -> Any:
        return open_catalog(self._name, self._data_dir)

    def _not_made_repr(self) -> str:
        return f"<catalog {self._name!r}, opened at first use>"

    open = MadeAtFirstUse.made          # the catalog (opened now if it was not yet)
    opened = MadeAtFirstUse.is_made

    @property
    def name(self) -> str:
        """The catalog's name in ``catalogs/`` (read without opening it)."""
        return self._name

    def files_directory(self) -> Path | None:
        """The directory a file-backed catalog reads its runs from (``None`` for any
        other kind); from the YAML while the catalog is not open yet."""
        if not self.is_made:
            declared = declared_runs_directory(self._name, self._data_dir)
            if declared is not None:
                return declared
        return files_directory(self.made())

    def __getitem__(self, key: Any) -> Any:
        return self.made()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self.made()

    def __iter__(self):
        return iter(self.made())

    def __len__(self) -> int:
        # iterating re-reads the run directory; intake's own len() can be stale
        return sum(1 for _ in self.made())


def files_directory(cat: Any) -> Path | None:
    """The directory a file-backed catalog ``cat`` (open, or a :class:`DeferredCatalog`)
    reads its runs from, where the catalog writer writes; ``None`` for any other kind."""
    if isinstance(cat, DeferredCatalog):
        return cat.files_directory()
    paths = getattr(cat, "paths", None)
    return Path(os.path.dirname(paths[0])) if paths else None


def __getattr__(name: str):
    """Entry-point look-up (``loader.catalogs:training``): the catalog for the current directory."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return open_catalog(name)
    except CatalogNotFound:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
