"""Import a happi entry's ``device_class``, but only from allowed modules.

A JSON edit must not be able to import arbitrary code: the module part of
``device_class`` has to be one of the config's ``allowed_modules`` or inside one
of them, otherwise it is refused *before* anything is imported.
"""
from __future__ import annotations

import importlib
from contextlib import contextmanager
from typing import Iterable, Iterator

DEFAULT_ALLOWED_MODULES = ("ophyd", "apstools", "loader.devices")


class ClassRefused(ImportError):
    """``device_class`` names a module outside ``allowed_modules``."""


def split_class_path(path: str) -> tuple[str, str]:
    module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ImportError(f"device_class {path!r} is not of the form module.Class")
    return module, attr


def module_allowed(module: str, allowed: Iterable[str]) -> bool:
    """True when ``module`` is one of ``allowed`` or a submodule of one."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def refusal(path: str, allowed: Iterable[str]) -> str | None:
    """Why ``path`` may not be imported (``None`` when it may)."""
    allowed = list(allowed)
    try:
        module, _ = split_class_path(path)
    except ImportError as exc:
        return str(exc)
    if not module_allowed(module, allowed):
        return (f"device_class {path!r}: module {module!r} is not in allowed_modules "
                f"{allowed}; refused, not imported")
    return None


def import_class(path: str, allowed: Iterable[str]):
    """The callable named by ``path``; ``ClassRefused`` if outside ``allowed``."""
    reason = refusal(path, allowed)
    if reason:
        raise ClassRefused(reason)
    module_name, attr = split_class_path(path)
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise ImportError(f"device_class {path!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ImportError(f"device_class {path!r} is not callable ({type(obj).__name__})")
    return obj


def import_classes(paths: Iterable[str], allowed: Iterable[str]) -> tuple[dict[str, object], dict[str, str]]:
    """Import each distinct class once: (path -> class, path -> reason it failed)."""
    allowed = list(allowed)
    classes: dict[str, object] = {}
    errors: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        try:
            classes[path] = import_class(path, allowed)
        except ClassRefused as exc:
            errors[path] = str(exc)
        except Exception as exc:  # any failure of a third-party import is reported, not raised
            errors[path] = f"import failed: {type(exc).__name__}: {exc}"
    return classes, errors


@contextmanager
def as_a_load_imports() -> Iterator[None]:
    """Within the block, device classes import as at a load: pyepics finds libca
    without setuptools, and what their libraries import but a session does not use
    (pint, matplotlib, most of apstools, ...) is left to first use
    (:mod:`loader.deferred_imports`).  ``beamline validate`` imports every class of a
    beamline too, and was seconds slower without it."""
    from . import deferred_imports, device_tuples, libca_path, xarray_pint
    libca_path.point_pyepics_at_libca()     # ophyd's import then skips setuptools
    device_tuples.install()                 # ophyd's ~480 Device namedtuples made at first use
    deferred_imports.defer()
    xarray_pint.install()                   # if databroker is imported already
    with deferred_imports.lending_names():
        yield
