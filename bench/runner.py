"""Run one measurement in a fresh Python process and collect medians.

Each figure is measured in a new interpreter (so imports and start-up count),
repeated, and reduced to its median; ratios are taken between figures measured
in the same ``python -m bench`` run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_worker(task: str, args: dict[str, Any], env: dict[str, str],
               timeout: float = 600.0, cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """``python -m bench.worker TASK ARGS_JSON`` in a fresh process; its last
    stdout line is a JSON object of measurements."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.setdefault("MPLBACKEND", "Agg")
    started = time.perf_counter()
    spawned_at = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", task, json.dumps(args)],
        capture_output=True, text=True, env=full_env, cwd=str(cwd or ROOT), timeout=timeout)
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench task {task} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["process_wall_s"] = wall
    if "ready_at" in result:             # from spawning the process to the work done
        result["seconds"] = result.pop("ready_at") - spawned_at
    return result


def median_of(task: str, args: dict[str, Any], env: dict[str, str], repeats: int,
              progress: str = "", cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Median of every numeric field over ``repeats`` fresh-process runs."""
    return interleaved({"only": (task, args, progress)}, env, repeats, cwd)["only"]


def interleaved(tasks: dict[str, tuple[str, dict[str, Any], str]], env: dict[str, str], repeats: int,
                cwd: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """``{label: median_of(task, args)}`` for ``tasks`` (label -> (task, args, progress)),
    run in rounds of one process each: figures that are compared then meet the same
    drift of the machine's speed, not one block of runs each.  Each result also keeps
    its ``rounds`` (every run's ``seconds``, in order) for ratios taken round by round."""
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in tasks}
    for i in range(repeats):
        for label, (task, args, progress) in tasks.items():
            if progress:
                print(f"  {progress} [{i + 1}/{repeats}]", flush=True)
            runs[label].append(run_worker(task, args, env, cwd=cwd))
    return {label: {**_medians(each), "rounds": [r.get("seconds") for r in each]}
            for label, each in runs.items()}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs if key in r]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            merged[key] = statistics.median(values)
        else:
            merged[key] = values[0]
    return merged


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write JSON atomically (temp file, then rename).  Sections of an earlier run
    that this one did not measure (``--only``) are kept."""
    if path.exists():
        results = {**json.loads(path.read_text()), **results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
