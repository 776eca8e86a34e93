"""A CA repeater on loopback, so clients hear the IOCs' beacons.

libca learns that an IOC came back (and re-searches its channels at once) from
beacons relayed by a repeater on UDP port 5065.  pyepics ships no caRepeater for
Linux, so we run caproto's, bound to 127.0.0.1 only.  If one already runs
(ours or a site's), nothing is started.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

from . import network

_started: subprocess.Popen | None = None


def repeater_port() -> int:
    return int(os.environ.get("EPICS_CA_REPEATER_PORT", "5065"))


def repeater_running(host: str = network.LOOPBACK) -> bool:
    """True when the repeater port is taken (by a repeater, we assume, as libca does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, repeater_port()))
        except OSError:
            return True
    return False


def ensure_repeater(host: str = network.LOOPBACK) -> bool:
    """Start a loopback repeater unless one runs; True if this call started it."""
    global _started
    if repeater_running(host) or (_started is not None and _started.poll() is None):
        return False
    _started = subprocess.Popen(
        [sys.executable, "-c", f"from caproto.sync.repeater import run; run({host!r})"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    atexit.register(stop_repeater)
    return True


def stop_repeater() -> None:
    """Stop the repeater this process started (if any)."""
    global _started
    if _started is not None and _started.poll() is None:
        _started.terminate()
        try:
            _started.wait(5)
        except subprocess.TimeoutExpired:
            _started.kill()
    _started = None
