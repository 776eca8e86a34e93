"""``beamline demo <beamline>``: a short experiment from a cold start.

1. start the simulated IOCs whose ports do not answer (and, at the end, stop
   only those);
2. load the beamline (devices, setup actions, session);
3. count the scaler; find the ``noisy`` peak and leave ``m1`` on it; take
   ``temperature`` to a new setpoint and count once it has settled; take one
   ``adsimdet`` frame into HDF5;
4. print what was recorded (runs read back from the catalog, the SPEC file, the
   HDF5 file) and save a PNG plot of the peak scans.

IOC ports: ``--gp-port``/``--ad-port`` when the CLI offers them, else the
loopback ports listed in ``$EPICS_CA_ADDR_LIST`` (gp first, ad second, as
``beamline sim`` prints them), else 5064 and 5066.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from iocs import DEFAULT_PORTS, network

PEAK_RANGE = (-1.6, 1.6)      # the YAML draws the peak centre from [-1.5, 1.5]
COARSE_POINTS = 17
FINE_POINTS = 21
TEMPERATURE_STEP = 3.0
NEEDED = ("scaler1", "m1", "noisy", "temperature", "adsimdet")
IOC_START_TIMEOUT = 30.0
LOAD_TIMEOUT = 20.0


class Progress:
    """Numbered, timed steps on stdout."""

    def __init__(self, total: int) -> None:
        self.total, self.n, self.t0 = total, 0, time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {text}  (t={time.monotonic() - self.t0:.1f} s)", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0


def choose_ports(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, int]:
    """gp and ad ports: CLI options, else ``$EPICS_CA_ADDR_LIST``, else the defaults."""
    environ = os.environ if environ is None else environ
    ports = dict(DEFAULT_PORTS)
    listed = []
    for entry in environ.get("EPICS_CA_ADDR_LIST", "").split():
        host, _, port = entry.partition(":")
        if host in (network.LOOPBACK, "localhost") and port.isdigit():
            listed.append(int(port))
    for kind, port in zip(("gp", "ad"), listed):
        ports[kind] = port
    for kind in ports:
        chosen = getattr(args, f"{kind}_port", None)
        if chosen:
            ports[kind] = int(chosen)
    return ports


def start_missing_iocs(ports: dict[str, int], data_dir: Path, log_dir: Path) -> list:
    """Start an IOC for each port nobody answers on; returns the ones started."""
    from iocs.launcher import IocProcess
    addr = network.address_list(ports.values())
    started = []
    try:
        for kind, port in ports.items():
            if network.port_answers(port):
                print(f"  {kind}: an IOC already answers on port {port}; using it", flush=True)
                continue
            ioc = IocProcess(kind, port, addr_list=addr,
                             data_dir=data_dir if kind == "ad" else None,
                             log_path=log_dir / f"ioc-{kind}.log")
            started.append(ioc.start(IOC_START_TIMEOUT))
            print(f"  {kind}: started ({ioc.ready_line})", flush=True)
    except Exception:
        for ioc in started:
            ioc.stop()
        raise
    return started


def run(args: argparse.Namespace) -> int:
    progress = Progress(7)
    ports = choose_ports(args)
    # the CA environment must be set before the first Channel Access call
    network.apply(network.client_environment(network.address_list(ports.values())))
    os.environ.setdefault("MPLBACKEND", "Agg")
    # databroker 1.2 reading xarray datasets: a library deprecation, not the user's business
    warnings.filterwarnings("ignore", category=FutureWarning, module="databroker")
    if args.data_dir:
        os.environ["BEAMLINE_DATA_DIR"] = str(Path(args.data_dir).resolve())

    from loader.session import resolve_paths
    from loader.config import find_config, read_yaml
    config_path = find_config(args.beamline, args.config)
    paths = resolve_paths((read_yaml(config_path).data or {}).get("paths"))
    data_dir = paths["data"]
    data_dir.mkdir(parents=True, exist_ok=True)
    from loader.logging_setup import setup_logging
    setup_logging(paths["logs"])            # from the start, so the load is in the log too

    progress.step(f"IOCs on 127.0.0.1 ports {ports} (data in {data_dir})")
    from iocs.launcher import IocStartError
    try:
        started = start_missing_iocs(ports, data_dir, paths["logs"])
    except IocStartError as exc:
        print(f"could not start the simulated IOCs: {exc} (see {paths['logs']}/ioc-*.log)",
              file=sys.stderr)
        return 1
    try:
        return _experiment(args, config_path, progress)
    finally:
        if started:
            _close_channel_access()      # before the servers go: no "virtual circuit" noise
        for ioc in started:
            ioc.stop()
        if started:
            print(f"\nstopped the IOCs this demo started: {', '.join(i.kind for i in started)}")


def _close_channel_access(timeout: float = 5.0) -> None:
    """Close this process's CA client (the demo is over; nothing reads PVs any more)."""
    ca = sys.modules.get("epics.ca")
    if ca is not None and getattr(ca, "libca", None) is not None:
        ca.finalize_libca(maxtime=timeout)


def _experiment(args: argparse.Namespace, config_path: Path, progress: Progress) -> int:
    progress.step(f"loading beamline {args.beamline!r} from {config_path}")
    from loader import load_beamline
    bl = load_beamline(args.beamline, config=str(config_path), timeout=LOAD_TIMEOUT)
    print(bl.status(), flush=True)
    if bl.session_error:
        print(f"the session could not start: {bl.session_error}", file=sys.stderr)
        return 1
    missing = [name for name in NEEDED if name not in bl]
    if missing:
        print(f"the demo needs {', '.join(missing)}, which did not load (see the table above)",
              file=sys.stderr)
        return 1
    RE = bl.RE
    from bluesky import plans as bp
    from plans.peak_finding import two_pass_scan
    from plans.temperature import temperature_count

    recorded: list[str] = []                     # uids of this demo's runs
    progress.step("counting scaler1")
    recorded += RE(bp.count([bl["scaler1"]], md={"demo": "scaler"}))

    progress.step("finding the noisy peak (two-pass scan) and moving m1 there")
    m1 = bl["m1"]
    peak_uids = list(RE(two_pass_scan(bl["noisy"], m1, *PEAK_RANGE, num=COARSE_POINTS,
                                      fine_num=FINE_POINTS, md={"demo": "peak"})))
    recorded += peak_uids
    print(f"  m1 is now at {m1.position:.4f}")

    progress.step("temperature: new setpoint, wait until settled, count")
    temperature = bl["temperature"]
    # from where the readback is now (just after the IOC starts it is still on its way)
    target = round(float(temperature.position) + TEMPERATURE_STEP, 1)
    recorded += RE(temperature_count(target, [bl["scaler1"]], timeout=30.0,
                                     md={"demo": "temperature"}))
    print(f"  temperature {temperature.position:.2f} (setpoint {target})")

    progress.step("one adsimdet frame into HDF5")
    frame_uid, = RE(bp.count([bl["adsimdet"]], md={"demo": "frame"}))
    recorded.append(frame_uid)

    progress.step("what was recorded")
    report(bl, recorded, frame_uid)
    png = Path(bl.paths["data"]) / "peak_scan.png"
    save_peak_plot(bl.cat, peak_uids, m1.position, png)
    print(f"  plot of the peak scans:  {png}")
    print(f"\ndemo finished in {progress.elapsed():.1f} s")
    return 0


def report(bl, uids: list[str], frame_uid: str) -> None:
    """This demo's runs as read back from the catalog, plus where the files are."""
    cat = bl.cat
    where = f" in {Path(cat.paths[0]).parent}" if getattr(cat, "paths", None) else ""
    print(f"  catalog {cat.name!r}: {len(list(cat))} runs{where}; this demo's:")
    print(f"  {'scan_id':>7}  {'uid':8}  {'plan':<8} {'points':>6}  detectors")
    for uid in uids:
        metadata = cat[uid].metadata
        start, stop = metadata["start"], metadata["stop"] or {}
        points = (stop.get("num_events") or {}).get("primary", 0)
        print(f"  {start.get('scan_id', ''):>7}  {uid[:8]}  {start.get('plan_name', ''):<8} "
              f"{points:>6}  {', '.join(start.get('detectors', []))}")
    spec = bl.callbacks.get("spec")
    if spec is not None:
        print(f"  SPEC data file:  {spec.spec_filename}")
    run = cat[frame_uid]
    frames = run.primary.read()
    image_key = [k for k in frames.data_vars if frames[k].ndim >= 3]
    for name, doc in run.documents(fill="no"):
        if name == "resource":
            print(f"  HDF5 file:  {Path(doc.get('root', '/')) / doc['resource_path']}")
    if image_key:
        frame = frames[image_key[0]][0]          # the first event's frame(s)
        print(f"  frame read back from the catalog: {image_key[0]} shape {tuple(frame.shape)}, "
              f"max {int(frame.max())}")


def save_peak_plot(cat, uids: list[str], center: float, path: Path) -> Path:
    """Plot each peak-scan pass (data read back from the catalog) to a PNG, atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, max(len(uids), 1), figsize=(5 * max(len(uids), 1), 4),
                             squeeze=False)
    for ax, uid in zip(axes[0], uids):
        run = cat[uid]
        data = run.primary.read()
        start = run.metadata["start"]
        x, y = start["motors"][0], start["detectors"][0]
        ax.plot(data[x].values, data[y].values, "o-", ms=3)
        ax.axvline(center, color="r", lw=1, label=f"{x} = {center:.4f}")
        ax.set(xlabel=x, ylabel=y, title=f"scan {start.get('scan_id')} (pass {start.get('pass', '?')})")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":  # pragma: no cover
    from loader.cli import main
    sys.exit(main(["demo", *sys.argv[1:]]))
