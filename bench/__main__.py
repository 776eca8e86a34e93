"""``python -m bench``: the benchmark suite (DESIGN.md §8, issue 7).

Starts its own simulated IOCs on free loopback ports, measures every figure in
fresh processes (median over repeats), prints a table and writes
``bench/results.json``.  Ratios compare figures measured in this same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from iocs import network
from iocs.launcher import start_iocs
from iocs.softioc import SoftIoc
from iocs.softioc import calcout_database as calcout_records

from . import runner
from .synthetic import calcout_database, motor_database

RESULTS = Path(__file__).resolve().parent / "results.json"
FIRST_USE_MOTORS = 5    # scaling: motors used (configuration, limits, a move) after the load


def _bench_config(directory: Path, database: Path, timeout: float, beamline: str = "bench",
                  description: str = "synthetic motors for the scaling benchmark",
                  allowed_module: str = "loader.devices", lazy: list[str] | None = None) -> Path:
    """The beamline YAML of a synthetic database; ``lazy`` names go to ``load: lazy``."""
    path = directory / f"{database.stem}{'_lazy' if lazy else ''}.yml"
    path.write_text(
        f"beamline: {beamline}\n"
        f"description: {description}\n"
        f"happi: {database.name}\n"
        f"allowed_modules: [{allowed_module}]\n"
        + (f"load: {{lazy: [{', '.join(lazy)}]}}\n" if lazy else "")
        + f"epics: {{connection_timeout: {timeout}}}\n")
    return path


def eager_training_config(directory: Path) -> Path:
    """training.yml without ``load: lazy``: every device's signals built at load."""
    import yaml
    root = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((root / "instrument_config" / "training.yml").read_text())
    config["happi"] = str(root / "happi_db.json")
    (config.get("load") or {}).pop("lazy", None)
    path = directory / "training_eager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def cold_start(env: dict, repeats: int, cwd: Path) -> dict:
    print("cold start", flush=True)
    # interleaved: a floor, a load and a hand-written package in every round, and the
    # load once more with every signal built up front (training.yml's `lazy` left out)
    out = runner.interleaved({
        "floor": ("floor", {}, "floor (import ophyd, bluesky, happi)"),
        "loader": ("cold_start", {}, "load_beamline('training')"),
        "loader_eager": ("cold_start", {"config": str(eager_training_config(cwd))},
                         "load_beamline('training'), nothing lazy"),
        "handwritten": ("handwritten", {}, "hand-written package"),
    }, env, repeats, cwd)
    out["eager_ratio_to_floor"] = out["loader_eager"]["seconds"] / out["floor"]["seconds"]
    loader_s = out["loader"]["seconds"]
    out["ratio_to_floor"] = loader_s / out["floor"]["seconds"]
    out["speedup_vs_handwritten"] = out["handwritten"]["seconds"] / loader_s
    # the same ratios taken within each round, then their median
    rounds = list(zip(out["floor"]["rounds"], out["loader"]["rounds"], out["handwritten"]["rounds"]))
    out["ratio_to_floor_by_round"] = statistics.median(load / floor for floor, load, _ in rounds)
    out["speedup_vs_handwritten_by_round"] = statistics.median(hand / load for _, load, hand in rounds)
    return out


def scaling(env: dict, counts: list[int], repeats: int, cwd: Path, timeout: float,
            dead_timeout: float, baseline_max: int, dead_baseline_max: int) -> dict:
    """Live databases get a timeout long enough to connect everything (the load
    returns as soon as all are connected); databases with dead entries get a short
    one, the same for our loader and the baseline, which waits it once per dead device.

    For each database the loader, the loader with the motors lazy and plain happi run
    in rounds of one process each (:func:`runner.interleaved`): the three meet the
    same drift of the machine's speed, and each ratio is also taken round by round."""
    print("scaling", flush=True)
    rows = []
    for dead in (0.0, 0.1):
        timeout_here = dead_timeout if dead else timeout
        for count in counts:
            db = motor_database(cwd / f"motors_{count}_{int(dead * 100)}.json", count,
                                dead_fraction=dead)
            config = _bench_config(cwd, db, timeout_here)
            row = {"motors": count, "dead_fraction": dead, "timeout": timeout_here}
            # every PV served: after the load, what the first use of a few motors costs
            first_use = {} if dead else {"first_use": FIRST_USE_MOTORS}
            tasks = {"loader": ("scaling_loader", {"config": str(config), "timeout": timeout_here, **first_use},
                                f"loader {count} motors, {dead:.0%} dead")}
            if not dead:    # the same motors named in `load: lazy` (loader/lazy_signals.py)
                names = [f"mot{i}" for i in range(1, count + 1)]
                lazy_config = _bench_config(cwd, db, timeout_here, lazy=names)
                tasks["loader_lazy"] = ("scaling_loader", {"config": str(lazy_config), "timeout": timeout_here,
                                                           **first_use}, f"loader {count} motors, lazy")
            if count <= (dead_baseline_max if dead else baseline_max):
                tasks["happi_baseline"] = ("scaling_happi", {"database": str(db), "timeout": timeout_here},
                                           f"happi load_devices {count} motors, {dead:.0%} dead")
            row.update(runner.interleaved(tasks, env, repeats, cwd))
            if "happi_baseline" in row:
                base = row["happi_baseline"]
                for label, key in (("loader", "speedup"), ("loader_lazy", "speedup_lazy")):
                    if label in row:
                        row[key] = base["seconds"] / row[label]["seconds"]
                        row[key + "_by_round"] = statistics.median(
                            b / mine for b, mine in zip(base["rounds"], row[label]["rounds"]))
            rows.append(row)
    return {"rows": rows, "connection_timeout": timeout, "dead_timeout": dead_timeout}


def reference(records: int, repeats: int, cwd: Path, timeout: float = 60.0) -> dict:
    """The same devices on EPICS's own softIoc (not our simulator): apstools'
    ``CalcoutRecord`` on base calcout records, connected by our loader, by plain
    happi + ophyd, and the same channels by libca alone (the floor).  Device
    classes are imported before each clock starts: this compares connecting."""
    print("reference IOC (EPICS softIoc)", flush=True)
    port = network.free_port()
    env = dict(network.client_environment(network.address_list([port])))
    prefix = "ref:calcout"
    iocs_db = calcout_records(cwd / "reference.db", prefix, records)
    happi_db = calcout_database(cwd / "reference.json", records, prefix)
    config = _bench_config(cwd, happi_db, timeout, beamline="reference",
                           description="calcout records served by EPICS's own softIoc",
                           allowed_module="apstools.synApps")
    names = cwd / "reference_pvs.json"
    common = {"timeout": timeout, "preimport": "apstools.synApps"}
    with SoftIoc(iocs_db, port):
        out = {"records": records, "device_class": "apstools.synApps.CalcoutRecord",
               "loader": runner.median_of("scaling_loader", dict(common, config=str(config), beamline="reference",
                                                                 pv_names=str(names)),
                                          env, repeats, f"loader, {records} calcout records", cwd),
               "happi_baseline": runner.median_of("scaling_happi", dict(common, database=str(happi_db),
                                                                        beamline="reference"),
                                                  env, repeats, f"happi load_devices, {records} calcout records", cwd),
               "libca": runner.median_of("reference_libca", dict(common, pv_names=str(names)),
                                         env, repeats, "libca alone, the same channels", cwd)}
    for key in ("loader", "happi_baseline"):
        out[key]["signals_per_s"] = out[key]["signals"] / out[key]["load_seconds"]
    out["libca"]["channels_per_s"] = out["libca"]["channels"] / out["libca"]["load_seconds"]
    out["speedup_vs_happi"] = out["happi_baseline"]["load_seconds"] / out["loader"]["load_seconds"]
    out["ratio_to_libca"] = out["loader"]["load_seconds"] / out["libca"]["load_seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=["cold", "scaling", "scan", "detector", "reference"],
                        action="append")
    parser.add_argument("--reference-records", type=int, default=20,
                        help="calcout records on the reference softIoc (92 PVs each)")
    parser.add_argument("--counts", default="16,100,300,1000")
    parser.add_argument("--baseline-max", type=int, default=1000,
                        help="largest motor count also loaded through plain happi")
    parser.add_argument("--dead-baseline-max", type=int, default=300,
                        help="the same with 10%% dead entries (slow: one timeout per dead device)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="scaling: connection timeout when every PV exists")
    parser.add_argument("--dead-timeout", type=float, default=5.0,
                        help="scaling: connection timeout with 10%% dead entries (baseline pays it per dead device)")
    args = parser.parse_args(argv)
    only = set(args.only or ["cold", "scaling", "scan", "detector", "reference"])
    counts = [int(c) for c in args.counts.split(",")]

    ports = {"gp": network.free_port(), "ad": network.free_port()}
    scale_port = network.free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    data = work / "data"
    data.mkdir()
    env = dict(network.client_environment(network.address_list(ports.values())))
    env.update(BEAMLINE_DATA_DIR=str(data), MPLBACKEND="Agg")
    scale_env = dict(network.client_environment(network.address_list([scale_port])))
    results: dict = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                                 "platform": platform.platform(),
                                 "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "repeats": args.repeats}
    iocs = start_iocs(ports, data_dir=data, log_dir=work)
    try:
        if "cold" in only:
            results["cold_start"] = cold_start(env, args.repeats, work)
        if "scan" in only:
            print("scan overhead", flush=True)
            # ~30 s a process: half the repeats, but an odd number, so that the median is
            # one process's ratio, not the mean of a fast and a slow one
            scan_repeats = max(1, args.repeats // 2) | 1
            results["scan_overhead"] = runner.median_of("scan_overhead", {"points": 500}, env,
                                                        scan_repeats, "scan/count 500 points", work)
        if "detector" in only:
            print("detector rate", flush=True)
            results["detector_rate"] = runner.median_of("detector_rate", {"frames": 100}, env,
                                                        max(1, args.repeats // 2), "adsimdet 100 frames", work)
        if "reference" in only:
            results["reference"] = reference(args.reference_records, args.repeats, work)
        if "scaling" in only:
            scale_iocs = start_iocs({"gp": scale_port}, log_dir=work,
                                    extra_args={"gp": ["--motors", str(max(counts))]})
            try:
                results["scaling"] = scaling(scale_env, counts, max(1, args.repeats // 2 + 1), work,
                                             args.timeout, args.dead_timeout, args.baseline_max,
                                             args.dead_baseline_max)
            finally:
                for ioc in scale_iocs:
                    ioc.stop()
    finally:
        for ioc in iocs:
            ioc.stop()
    runner.write_results(RESULTS, results)
    from .report import table
    print(table(results))
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
