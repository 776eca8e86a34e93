"""``beamline sim``: run the simulated IOCs in the foreground until Ctrl-C."""
from __future__ import annotations

import argparse

from iocs import network
from iocs.launcher import start_iocs


def run(args: argparse.Namespace) -> int:
    ports = {"gp": args.gp_port, "ad": args.ad_port}
    if args.only:
        ports = {args.only: ports[args.only]}
    iocs = start_iocs(ports, data_dir=args.data_dir,
                      extra_args={"gp": ["--motors", str(args.motors)]})
    for ioc in iocs:
        print(ioc.ready_line, flush=True)
    print(f"export EPICS_CA_AUTO_ADDR_LIST=NO EPICS_CA_ADDR_LIST='{network.address_list(ports.values())}'",
          flush=True)
    print("Ctrl-C stops them.", flush=True)
    try:
        for ioc in iocs:
            ioc.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for ioc in iocs:
            ioc.stop()
    return 0
