"""The benchmark table printed by ``python -m bench`` (and pasted into BENCHMARKS.md)."""
from __future__ import annotations


def _s(x: float) -> str:
    return f"{x:.2f} s"


def _ratio(row: dict, key: str) -> str:
    """A scaling row's speed-up, and in brackets the median of its round-by-round ratios."""
    by_round = row.get(key + "_by_round")
    return f"{row[key]:.1f}x" + (f" ({by_round:.1f}x)" if by_round is not None else "")


def table(results: dict) -> str:
    lines = []
    m = results.get("machine", {})
    lines.append(f"machine: {m.get('cores')} cores, {m.get('memory_gb')} GiB, Python {m.get('python')}; "
                 f"median of {results.get('repeats')} fresh processes unless noted")
    cold = results.get("cold_start")
    if cold:
        lines += ["", "| cold start | wall | peak RSS |", "|---|---|---|"]
        for key, label in (("floor", "(a) import ophyd+bluesky+happi"),
                           ("loader", "load_beamline('training') + session"),
                           ("loader_eager", "the same, nothing lazy (calcs, calcouts built up front)"),
                           ("handwritten", "(b) hand-written package")):
            r = cold.get(key)
            if r is None:
                continue
            lines.append(f"| {label} | {_s(r['seconds'])} | {r['peak_rss_mb']:.0f} MB |")
        phases = {k[6:]: v for k, v in cold["loader"].items() if k.startswith("phase_")}
        lines.append("")
        lines.append("loader phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
        lines.append(f"loader / floor = {cold['ratio_to_floor']:.2f}x (target <= 1.6); "
                     f"hand-written / loader = {cold['speedup_vs_handwritten']:.1f}x (target >= 3)")
        if "eager_ratio_to_floor" in cold:
            lines.append(f"nothing lazy / floor = {cold['eager_ratio_to_floor']:.2f}x")
        if "ratio_to_floor_by_round" in cold:
            lines.append(f"the same, round by round (a floor, a load, a hand-written package each): "
                         f"{cold['ratio_to_floor_by_round']:.2f}x, {cold['speedup_vs_handwritten_by_round']:.1f}x")
    scan = results.get("scan_overhead")
    if scan:
        lines += ["", "| scan overhead (500 points) | bare RunEngine | full session | kept |", "|---|---|---|---|"]
        for kind in ("scan", "count"):
            lines.append(f"| {kind} | {scan[f'{kind}_bare_points_per_s']:.0f} pts/s | "
                         f"{scan[f'{kind}_session_points_per_s']:.0f} pts/s | {scan[f'{kind}_ratio']:.0%} |")
        if "best_effort_first_use_s" in scan:
            lines.append(f"the session's first scan also makes its BestEffortCallback (imports matplotlib): "
                         f"{_s(scan['best_effort_first_use_s'])}, once")
    det = results.get("detector_rate")
    if det:
        lines += ["", f"detector: {det['frames_per_s']:.1f} frames/s written (1024x1024 into HDF5, catalogued run; "
                  f"target >= 20), read back {det['read_mb_per_s']:.0f} MB/s (target >= 100)"
                  + (f"; a second run read after it: {det['read_again_mb_per_s']:.0f} MB/s"
                     if "read_again_mb_per_s" in det else "")]
        once = [f"{label} {_s(det[key])}" for key, label in (
            ("best_effort_first_use_s", "the BestEffortCallback (matplotlib)"),
            ("catalog_open_s", "opening the catalog to read (databroker's drivers)")) if key in det]
        if once:
            lines.append("timed on their own, once a process: " + "; ".join(once))
    ref = results.get("reference")
    if ref:
        lines += ["", f"| reference IOC: EPICS softIoc, {ref['records']} calcout records "
                  f"({ref['device_class']}) | connected | time | rate |", "|---|---|---|---|"]
        for key, label in (("libca", "libca alone (pyepics ca), the same channels"),
                           ("loader", "our loader"), ("happi_baseline", "happi load_devices + wait")):
            r = ref[key]
            if key == "libca":
                lines.append(f"| {label} | {r['connected']} of {r['channels']} channels | "
                             f"{_s(r['load_seconds'])} | {r['channels_per_s']:.0f} channels/s |")
            else:
                lines.append(f"| {label} | {r['signals']} signals | {_s(r['load_seconds'])} | "
                             f"{r['signals_per_s']:.0f} signals/s |")
        lines.append(f"loader: {ref['speedup_vs_happi']:.1f}x faster than happi + ophyd, "
                     f"{ref['ratio_to_libca']:.1f}x the libca floor (device classes imported before the clock)")
    scaling = results.get("scaling")
    if scaling:
        lines += ["", "| motors | dead | loader | happi load_devices + wait | speed-up "
                  "| loader, motors lazy | speed-up |", "|---|---|---|---|---|---|---|"]
        for row in scaling["rows"]:
            base, lazy = row.get("happi_baseline"), row.get("loader_lazy")
            lines.append(f"| {row['motors']} | {row['dead_fraction']:.0%} | {_s(row['loader']['seconds'])} "
                         f"({row['loader']['connected']} ok) | "
                         + (f"{_s(base['seconds'])} ({base['connected']} ok) | {_ratio(row, 'speedup')} |"
                            if base else "not run | |")
                         + (f" {_s(lazy['seconds'])} ({lazy['connected']} ok) | " if lazy else " | ")
                         + (f"{_ratio(row, 'speedup_lazy')} |" if "speedup_lazy" in row else " |"))
        lines.append(f"(connection timeout {scaling['connection_timeout']:g} s with every PV served, "
                     f"{scaling.get('dead_timeout', 0):g} s with dead entries, for both; median of "
                     f"{scaling['rows'][0]['loader'].get('runs')} fresh processes each, run in rounds "
                     "of one process each; a speed-up is the ratio of the medians, and in brackets "
                     "the median of the ratios taken round by round)")
        used = [row for row in scaling["rows"] if "first_use_ms" in row["loader"]]
        if used:
            lines += ["", "| motors | first use of a motor (configuration, limits, a move): built at load "
                      "| again | motors lazy | again |", "|---|---|---|---|---|"]
            for row in used:
                built, lazy = row["loader"], row.get("loader_lazy") or {}
                lines.append(f"| {row['motors']} | {built['first_use_ms']:.0f} ms | {built['again_ms']:.0f} ms | "
                             + (f"{lazy['first_use_ms']:.0f} ms | {lazy['again_ms']:.0f} ms |"
                                if "first_use_ms" in lazy else "| |"))
            lines.append(f"(median over {used[0]['loader'].get('used_motors', '?')} motors used one after "
                         "another, then the median over runs)")
    return "\n".join(lines)
