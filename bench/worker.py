"""``python -m bench.worker TASK ARGS_JSON``: one measurement in a fresh process.

Prints one JSON line of results; the parent adds ``seconds`` (from spawning
this process to the work being done, see ``bench.runner``).  Imports are inside
the tasks so that the import cost is part of what is measured.
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

T_PROCESS = time.perf_counter()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(args: dict) -> dict:
    """Baseline (a): a process that only imports ophyd, bluesky and happi."""
    import bluesky  # noqa: F401
    import happi  # noqa: F401
    import ophyd  # noqa: F401
    return {"peak_rss_mb": _rss_mb()}


def cold_start(args: dict) -> dict:
    """``load_beamline`` with every device connected and set up, plus the session."""
    from loader import load_beamline
    t_import = time.perf_counter() - T_PROCESS
    bl = load_beamline(args.get("beamline", "training"), config=args.get("config"),
                       session=args.get("session", True))
    failed = [row.name for row in bl.status().failed]
    out = {"peak_rss_mb": _rss_mb(), "loader_import": t_import,
           "devices": len(bl.devices), "failed": failed}
    out.update({f"phase_{k}": v for k, v in bl.timings.items()})
    return out


def handwritten(args: dict) -> dict:
    """Baseline (b): the same devices as a hand-written instrument package builds
    them: one module after another, each device waits for its own connection
    (ophyd's default path), setup done in turn, then the same session."""
    import importlib

    from loader.config import find_config
    from loader.happi_db import select_items
    from loader.instantiate import instantiate
    from loader.setup_runner import SetupContext, available_actions, run_setups
    from loader.validation import validate

    path = find_config(args.get("beamline", "training"), args.get("config"))
    report = validate(config=path, import_classes=False)
    config = report.config
    from loader.epics_env import apply_epics_defaults
    apply_epics_defaults(config.get("epics"))
    items = select_items(report.database.docs, config["beamline"], None, skip={})
    timeout = float(args.get("timeout", 10))
    devices = {}
    failed = []
    for item in items:              # "one module after another"
        module, _, attr = item.device_class.rpartition(".")
        cls = getattr(importlib.import_module(module), attr)
        try:
            obj = instantiate(item, cls)
            obj.wait_for_connection(timeout=timeout)
        except Exception:
            failed.append(item.name)
            continue
        devices[item.name] = obj
    actions, _ = available_actions()
    context = SetupContext(config["beamline"], Path(path), config, devices)
    for name in devices:            # setup in turn, device by device
        steps = (config.get("setup") or {}).get(name)
        if steps:
            errors, _ = run_setups({name: devices[name]}, {name: steps}, actions, context)
            failed += [n for n, e in errors.items() if e]
    session_s = 0.0
    if args.get("session", True):
        from loader.beamline import Beamline
        from loader.session import build_session
        t0 = time.perf_counter()
        bl = Beamline(config["beamline"], path, session=True)
        bl.devices = devices
        bl.config = config
        build_session(bl, config)
        session_s = time.perf_counter() - t0
    return {"peak_rss_mb": _rss_mb(),
            "devices": len(devices), "failed": failed, "phase_session": session_s}


def _preimport(args: dict) -> None:
    """Import the device classes' module before the clock starts (reference IOC:
    the three ways compare connecting, not importing)."""
    if args.get("preimport"):
        import importlib
        importlib.import_module(args["preimport"])


def _signal_count(devices) -> int:
    from loader.connect import signals_of
    return sum(len(signals_of(obj)) for obj in devices)


def scaling_loader(args: dict) -> dict:
    """Our loader on a synthetic database (motors, or the reference IOC's records).
    With ``pv_names`` it also writes the names of the channels it opened there."""
    _preimport(args)
    from loader import load_beamline
    bl = load_beamline(args.get("beamline", "bench"), config=args["config"], session=False,
                       timeout=args["timeout"])
    rows = bl.status()
    ready = [bl[r.name] for r in rows if r.ok]
    out = {"load_seconds": bl.timings.get("total", 0.0),
           "connected": len(ready), "not_connected": len(rows.failed),
           "signals": _signal_count(ready), "peak_rss_mb": _rss_mb(),
           "ready_at": time.time()}     # (what follows is after the load, not in its time)
    if args.get("first_use"):
        out.update(_first_use(ready[:args["first_use"]]))
    if args.get("pv_names"):
        import epics
        names = sorted({key[0] for key in epics.pv._PVcache_})
        out["channels"] = len(names)
        Path(args["pv_names"]).write_text(json.dumps(names))
    return out


def _use_motor(motor) -> float:
    """Milliseconds for what a scan's first point asks of a motor: its configuration
    (velocity, acceleration, units, offsets), its limits, a move to where it is."""
    started = time.perf_counter()
    motor.read_configuration()
    _ = motor.limits              # the setpoint's control limits
    motor.move(motor.position, wait=True, timeout=10.0)
    return (time.perf_counter() - started) * 1000.0


def _first_use(motors: list) -> dict:
    """A ``load: lazy`` motor builds most of its signals at first use: what that costs,
    one motor after another, against the same use again."""
    first = [_use_motor(m) for m in motors]
    again = [_use_motor(m) for m in motors]
    return {"first_use_ms": statistics.median(first), "again_ms": statistics.median(again),
            "used_motors": len(motors)}


def scaling_happi(args: dict) -> dict:
    """Baseline: ``happi.loader.load_devices`` + ``wait_for_connection`` per device."""
    _preimport(args)
    import happi
    from happi.loader import load_devices
    t0 = time.perf_counter()
    client = happi.Client(path=args["database"])
    items = client.search(beamline=args.get("beamline", "bench"))
    ns = load_devices(*[r.item for r in items], pprint=False, use_cache=False, threaded=False)
    connected = not_connected = 0
    ready = []
    for name in [r.item.name for r in items]:
        obj = getattr(ns, name, None)
        try:
            obj.wait_for_connection(timeout=args["timeout"])
            connected += 1
            ready.append(obj)
        except Exception:
            not_connected += 1
    load_seconds = time.perf_counter() - t0
    return {"load_seconds": load_seconds, "connected": connected, "not_connected": not_connected,
            "signals": _signal_count(ready), "peak_rss_mb": _rss_mb()}


def reference_libca(args: dict) -> dict:
    """The floor on the reference IOC: pyepics' libca wrapper alone creates the
    channels a load opened, waits for all, then reads each with its CTRL metadata
    (all requests in flight at once).  No ophyd, no device, no subscription."""
    _preimport(args)
    from epics import ca
    names = json.loads(Path(args["pv_names"]).read_text())
    ca.initialize_libca()
    t0 = time.perf_counter()
    chids = [ca.create_channel(name, connect=False, auto_cb=False) for name in names]
    waiting, deadline = chids, t0 + args["timeout"]
    while waiting and time.perf_counter() < deadline:
        ca.pend_event(0.002)                      # libca's receive thread connects them
        waiting = [chid for chid in waiting if not ca.isConnected(chid)]
    connected = [chid for chid in chids if ca.isConnected(chid)]
    ftypes = [ca.promote_fieldtype(ca.field_type(chid), use_ctrl=True) for chid in connected]
    for chid, ftype in zip(connected, ftypes):
        ca.get_with_metadata(chid, ftype=ftype, wait=False)
    ca.flush_io()
    values = [ca.get_complete_with_metadata(chid, ftype=ftype, timeout=args["timeout"])
              for chid, ftype in zip(connected, ftypes)]
    return {"load_seconds": time.perf_counter() - t0, "channels": len(names),
            "connected": len(connected), "read": sum(v is not None for v in values),
            "peak_rss_mb": _rss_mb()}


def scan_overhead(args: dict) -> dict:
    """Points/s of a scan and a count, full session vs a bare RunEngine."""
    import bluesky.plans as bp
    from bluesky import RunEngine

    from loader import load_beamline
    bl = load_beamline("training", config=args.get("config"),
                       labels=["motor", "detectors", "simulator", "positioner"])
    points = int(args.get("points", 500))
    noisy, m1, temperature = bl["noisy"], bl["m1"], bl["temperature"]
    m1.velocity.put(1000)        # the point is overhead per point, not motor travel
    bare = RunEngine({})
    out = {}
    # the session's BestEffortCallback is made at the first scan (matplotlib's import):
    # a one-time cost, timed here on its own, not in the first scan's points/s
    bec = bl.callbacks.get("best_effort")
    if bec is not None:
        t0 = time.perf_counter()
        bec.made()
        out["best_effort_first_use_s"] = time.perf_counter() - t0
    for label, RE in (("bare", bare), ("session", bl.RE)):
        t0 = time.perf_counter()
        RE(bp.scan([noisy], m1, -1, 1, points))
        out[f"scan_{label}_points_per_s"] = points / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        RE(bp.count([noisy, temperature], num=points))
        out[f"count_{label}_points_per_s"] = points / (time.perf_counter() - t0)
    out["scan_ratio"] = out["scan_session_points_per_s"] / out["scan_bare_points_per_s"]
    out["count_ratio"] = out["count_session_points_per_s"] / out["count_bare_points_per_s"]
    return out


def detector_rate(args: dict) -> dict:
    """adsimdet frames/s into HDF5 through a catalogued run, and read-back MB/s."""
    import bluesky.plans as bp
    import databroker

    from loader import load_beamline
    bl = load_beamline("training", config=args.get("config"), labels=["area_detector"])
    frames = int(args.get("frames", 50))
    det = bl["adsimdet"]
    det.cam.acquire_time.put(0.001)
    det.cam.acquire_period.put(0.001)
    out = {"frames": frames}
    # one-time costs, timed on their own as in scan_overhead: the BestEffortCallback
    # the first run makes (matplotlib's import), and opening the catalog to read
    # (intake parses its YAML by importing databroker's drivers, xarray, pandas)
    bec = bl.callbacks.get("best_effort")
    if bec is not None:
        t0 = time.perf_counter()
        bec.made()
        out["best_effort_first_use_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (uid,) = bl.RE(bp.count([det], num=frames))
    write_s = time.perf_counter() - t0
    # a second run, read back after the first: the first read of a process also pays
    # one-time imports (h5py; pint, which xarray imports to check for its arrays)
    (second_uid,) = bl.RE(bp.count([det], num=frames))
    t0 = time.perf_counter()
    catalog = databroker.catalog[bl.config["catalog"]]
    out["catalog_open_s"] = time.perf_counter() - t0
    array, read_s = _read_images(catalog, uid)
    second, second_read_s = _read_images(catalog, second_uid)
    out.update(frames_per_s=frames / write_s, read_mb_per_s=array.nbytes / 1e6 / read_s,
               read_again_mb_per_s=second.nbytes / 1e6 / second_read_s, shape=list(array.shape))
    return out


def _read_images(catalog, uid: str):
    """The run's detector images as one array, and the seconds the read took."""
    t0 = time.perf_counter()
    data = catalog[uid].primary.read()
    key = [k for k in data.data_vars if k.endswith("_image")][0]
    array = data[key].values
    return array, time.perf_counter() - t0


TASKS = {f.__name__: f for f in (floor, cold_start, handwritten, scaling_loader, scaling_happi,
                                  reference_libca, scan_overhead, detector_rate)}


def main() -> None:
    task, args = sys.argv[1], json.loads(sys.argv[2])
    result = TASKS[task](args)
    # the parent turns this into seconds since it spawned us (interpreter start-up
    # included); process teardown (CA context, threads) is not what a user waits for
    result.setdefault("ready_at", time.time())
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
