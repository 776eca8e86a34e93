"""Test fixtures: simulated IOCs on free loopback ports, started by the tests.

The CA address list must be in the environment before the first Channel Access
call of this process, so the ports are chosen when this module is imported.
"""
from __future__ import annotations

import os

import pytest

from iocs import network
from iocs.launcher import IocProcess

PORTS = {"gp": network.free_port(), "ad": network.free_port(), "softioc": network.free_port(),
         # a softIoc a test starts, kills and restarts by itself (no other test holds its channels)
         "scratch": network.free_port()}
ADDR_LIST = network.address_list(PORTS.values())
network.apply(network.client_environment(ADDR_LIST))
os.environ.setdefault("MPLBACKEND", "Agg")
# keep happi, intake and IPython away from the user's own configuration
os.environ.pop("HAPPI_CFG", None)


def _ioc_fixture(kind: str, tmp_path_factory) -> IocProcess:
    data_dir = tmp_path_factory.mktemp(f"{kind}_ioc_data") if kind == "ad" else None
    log_dir = tmp_path_factory.mktemp(f"{kind}_ioc_log")
    return IocProcess(kind, PORTS[kind], addr_list=ADDR_LIST, data_dir=data_dir,
                      log_path=log_dir / "ioc.log")


@pytest.fixture(scope="session")
def gp_ioc_process(tmp_path_factory):
    ioc = _ioc_fixture("gp", tmp_path_factory).start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="session")
def ad_ioc_process(tmp_path_factory):
    ioc = _ioc_fixture("ad", tmp_path_factory).start()
    yield ioc
    ioc.stop()


@pytest.fixture(scope="session")
def softioc(tmp_path_factory):
    """EPICS's own softIoc (epicscorelibs) serving ``sx:ao0..ao69``, ``sx:bo``, ``sx:mbbo``."""
    from iocs.softioc import SoftIoc, ao_database
    db = ao_database(tmp_path_factory.mktemp("softioc") / "test.db", "sx:", 70)
    ioc = SoftIoc(db, PORTS["softioc"]).start()
    yield ioc
    ioc.stop()


@pytest.fixture
def gp_ioc(gp_ioc_process):
    """The running ``gp:`` IOC (restarted if an earlier test killed it)."""
    if not gp_ioc_process.running:
        gp_ioc_process.start()
    return gp_ioc_process


@pytest.fixture
def ad_ioc(ad_ioc_process):
    """The running ``ad:`` IOC (restarted if an earlier test killed it)."""
    if not ad_ioc_process.running:
        ad_ioc_process.start()
    return ad_ioc_process


def pytest_collection_modifyitems(config, items):
    """Run the ``faults`` tests last: they kill and restart the shared IOCs, and the
    channels other tests hold take a few seconds to reconnect afterwards."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


IOC_LOG_LINES = 25


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a simulated IOC shows the end of that IOC's log (CI
    keeps no files: a dropped update or a server error is then in the report)."""
    outcome = yield
    report = outcome.get_result()
    if report.passed or report.skipped:
        return
    for name in ("gp_ioc_process", "ad_ioc_process"):
        ioc = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        log_path = getattr(ioc, "log_path", None)
        if log_path is None or not os.path.exists(log_path):
            continue
        with open(log_path, errors="replace") as log:
            tail = log.readlines()[-IOC_LOG_LINES:]
        if tail:
            report.sections.append((f"{ioc.kind} IOC log (last {len(tail)} lines)", "".join(tail)))
