"""Search replies carry the client's datagram sequence number, as EPICS's rsrv does.

libca puts a sequence number in the VersionRequest that opens each search
datagram and accepts a reply as fresh only if the VersionResponse echoes it.
caproto's server answers with a fixed number; libca then never widens its
search window and connects ~1,000 channels/s however idle the IOC is
(``iocs/server.py``).  If a future caproto changes how replies are built, these
tests show whether our echo still reaches the wire.
"""
from __future__ import annotations

import socket

import caproto as ca
import pytest


def _search(port: int, name: str, sequence: int) -> list:
    """One search datagram as libca sends it; the commands of the reply."""
    version = ca.VersionRequest(priority=0, version=13)
    version.header.parameter1 = sequence
    request = ca.Broadcaster(our_role=ca.CLIENT).send(
        version, ca.SearchRequest(name=name, cid=77, version=13))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.bind(("127.0.0.1", 0))
        # sent again until answered, as libca does: a softIoc whose TCP port already
        # answers (the fixture's readiness check) may not have bound its UDP port yet
        for _ in range(10):
            sock.sendto(request, ("127.0.0.1", port))
            try:
                data, address = sock.recvfrom(65536)
                break
            except TimeoutError:
                continue
        else:
            raise TimeoutError(f"no search reply from 127.0.0.1:{port} in 5 s")
    return ca.Broadcaster(our_role=ca.CLIENT).recv(data, address)


def _echoed(commands) -> tuple[int, list[int]]:
    version, = [c for c in commands if isinstance(c, ca.VersionResponse)]
    return version.header.parameter1, [c.cid for c in commands if isinstance(c, ca.SearchResponse)]


@pytest.mark.parametrize("sequence", [2, 4242, 70000])
def test_gp_ioc_echoes_the_search_sequence_number(gp_ioc, sequence):
    assert _echoed(_search(gp_ioc.port, "gp:m1.VAL", sequence)) == (sequence, [77])


def test_echo_matches_epics_softioc(gp_ioc, softioc):
    """The reference: EPICS's own server answers the same datagram the same way."""
    theirs = _echoed(_search(softioc.port, "sx:ao0", 31337))
    ours = _echoed(_search(gp_ioc.port, "gp:m1.VAL", 31337))
    assert ours == theirs == (31337, [77])
