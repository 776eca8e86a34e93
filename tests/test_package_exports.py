"""Which submodule a package's ``__init__`` takes each name from, read from its
source (issue 7: apstools' device packages are not run at a load)."""
import textwrap

from loader.package_exports import exports_from_submodules, read_exports


def exports(source: str) -> dict:
    return exports_from_submodules(textwrap.dedent(source), "pkg")


def test_names_and_submodules_come_from_top_level_relative_imports():
    assert exports("""
        '''A package like apstools.synApps.'''
        from .swait import SwaitRecord
        from .swait import UserCalcN as Calc
        from .sub.deep import Deep
        import os
        from os import path
    """) == {
        "swait": ("pkg.swait", None),
        "SwaitRecord": ("pkg.swait", "SwaitRecord"),
        "Calc": ("pkg.swait", "UserCalcN"),
        "sub": ("pkg.sub", None),
        "Deep": ("pkg.sub.deep", "Deep"),
    }


def test_a_name_bound_again_or_only_conditionally_is_left_to_the_package():
    found = exports("""
        from .a import Twice
        Twice = Twice.wrapped
        from .a import Redefined
        def Redefined(): ...
        try:
            from .b import Maybe
        except ImportError:
            Maybe = None
        if True:
            from .c import Inside
        from .d import Kept
        for Looped in (): ...
        from .e import Looped
        from .f import f
    """)
    assert set(found) == {"a", "d", "Kept", "e", "f"}
    assert found["f"] == ("pkg.f", "f")     # the import binds the submodule's f over the module


def test_a_star_import_could_bind_anything():
    assert exports("""
        from .a import A
        from .b import *
    """) == {}


def test_an_unreadable_init_gives_nothing(tmp_path):
    broken = tmp_path / "__init__.py"
    broken.write_text("from .a import (\n")
    assert read_exports(str(broken), "pkg") == {}
    assert read_exports(str(tmp_path / "missing.py"), "pkg") == {}
