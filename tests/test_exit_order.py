"""At exit, a callback in progress ends before the channels are cleared
(``loader/exit_order.py``).

In a fresh interpreter: the order of exit handlers is what is tested, and this
process's handlers are not run until the whole test session ends.
"""
import os
import subprocess
import sys

EXITS_DURING_A_CALLBACK = """
import threading, time
from loader import load_beamline
bl = load_beamline("training", labels=["motor", "iocstats"], session=False)
m1, stats = bl["m1"], bl["gp_stats"]
started = threading.Event()

def busy_callback(value, old_value, **kwargs):
    # gets from ophyd's monitor thread, as EpicsMotor's limit callback makes
    if old_value is None or started.is_set():
        return
    started.set()
    t0, gets = time.monotonic(), 0
    while time.monotonic() - t0 < 1.0:
        m1.user_setpoint._read_pv.get_ctrlvars()
        gets += 1
    print("callback done in", threading.current_thread().name, gets > 0, flush=True)

stats.uptime.subscribe(busy_callback)      # the IOC updates it every second
assert started.wait(10), "no uptime update"
print("leaving", flush=True)
"""


def test_exit_waits_for_a_callback_before_the_channels_are_cleared(gp_ioc):
    out = subprocess.run([sys.executable, "-c", EXITS_DURING_A_CALLBACK], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "leaving" in out.stdout
    assert "callback done in monitor True" in out.stdout, out.stderr[-3000:]
    for sign in ("Unexpected channel ID", "context is unset", "Traceback"):
        assert sign not in out.stderr, out.stderr[-3000:]
