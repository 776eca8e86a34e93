"""Simulated EPICS IOCs: real Channel Access servers (caproto) on loopback.

``gp`` is the synApps "xxx" general-purpose IOC (motors, scaler, swait/calcout,
IOC statistics, soft PVs); ``ad`` is an ADSimDetector with HDF5 and image plugins.
Start them with ``python -m iocs gp|ad|all`` or ``beamline sim``.
"""

DEFAULT_PORTS = {"gp": 5064, "ad": 5066}
DEFAULT_PREFIXES = {"gp": "gp:", "ad": "ad:"}
