"""A move started while ophyd is still finishing the previous one (what the
RunEngine does between a scan's reset move and the next ``mv``) must complete.

ophyd runs a positioner's "move finished" subscribers and then clears them; a
status subscribed in between was cleared too and never finished.  The test holds
ophyd inside that window (a callback of the first move's status waits) while the
second move starts, on a real motor record of the simulated ``gp:`` IOC.
"""
from __future__ import annotations

import threading

import pytest

from loader.devices.motor import EpicsMotorWithSREV

pytestmark = pytest.mark.slow


def test_a_move_started_while_the_last_one_finishes_is_not_lost(gp_ioc, caplog):
    m6 = EpicsMotorWithSREV("gp:m6", name="m6")
    m6.wait_for_connection(timeout=10)
    m6.velocity.put(5.0, wait=True)
    m6.move(0.0, wait=True, timeout=10)
    finishing, release = threading.Event(), threading.Event()

    def hold_inside_done_moving(status):
        finishing.set()
        release.wait(5)

    first = m6.move(0.5, wait=False)
    first.add_callback(hold_inside_done_moving)
    try:
        assert finishing.wait(10), "the first move did not finish"
        threading.Timer(0.5, release.set).start()
        second = m6.move(0.0, wait=False)      # as the RunEngine would, once told "done"
        second.wait(10)
    finally:
        release.set()
    assert first.success and second.success
    assert m6.position == pytest.approx(0.0)
    assert "InvalidState" not in caplog.text       # the finished move was not failed again
