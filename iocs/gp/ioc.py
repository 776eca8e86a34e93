"""The ``gp:`` IOC: synApps "xxx"-style general-purpose IOC assembled from record modules.

Each module's ``build(prefix, **options)`` returns caproto ``PVGroup`` objects.
"""
from __future__ import annotations

from ..server import run_ioc
from . import calcout, iocstats, motor, scaler, softpvs, swait


def build_groups(prefix: str = "gp:", motors: int = 16) -> list:
    """All PV groups of one ``gp:`` IOC."""
    return [
        *motor.build(prefix, count=motors),
        *scaler.build(prefix),
        *swait.build(prefix),
        *calcout.build(prefix),
        *iocstats.build(prefix),
        *softpvs.build(prefix),
    ]


def run(prefix: str = "gp:", port: int = 5064, host: str = "127.0.0.1", motors: int = 16) -> None:
    run_ioc("gp", build_groups(prefix, motors), port=port, host=host)
