"""Benchmark the planner against the floor: reading the same snapshot and sorting by one score.

Usage::

    python benchmarks/planner.py                       # 10k, 100k and 1M tasks, once each
    python benchmarks/planner.py --sizes 10000 100000  # a quicker run
    python benchmarks/planner.py generate N PATH       # write a synthetic snapshot

For each size it generates a snapshot (10 classes, 3 source keys, 5 % labeled; cached under
``--workdir``) and runs, each in a fresh process pinned to one core:

- ``floor``: ``json.loads`` every line, take one class's score, sort, print the top ``--limit``;
- ``plan``: ``labelplan plan --limit K --format jsonl`` (the real command, output to /dev/null);
- ``incremental``: build the planner, take the head, then time ``record_annotation`` for one
  new annotation and the next ``head``.

Wall time is measured around each process and peak memory is that process's own max RSS
(``os.wait4``). It prints one JSON document and the markdown table for ``docs/benchmarks.md``.
Ratios, not absolute times, are the point: the machine is shared, so compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "examples" / "plan.yaml"
NOW = datetime(2024, 5, 8, 12, 0, tzinfo=UTC)

#: Class prevalence in the synthetic stream: two frequent classes, a long tail of rare ones.
PREVALENCE = {
    "car": 0.35,
    "person": 0.30,
    "truck": 0.08,
    "traffic_light": 0.07,
    "bus": 0.05,
    "bicycle": 0.04,
    "motorcycle": 0.03,
    "dog": 0.03,
    "horse": 0.03,
    "stop_sign": 0.02,
}
LABEL_VALUE = {"stop_sign": "Stop sign", "traffic_light": "Traffic light"}
LEAD_SECONDS = {"car": 12.0, "person": 15.0, "bicycle": 40.0, "stop_sign": 25.0}


def generate(n: int, path: Path, seed: int = 0, labeled_share: float = 0.05) -> None:
    """Write a synthetic snapshot of ``n`` tasks that looks like a street-scene project.

    Scores are a softmax over noisy logits with the true class lifted, so the model is right
    most of the time and unsure some of the time; 40 % of tasks sit in near-duplicate groups of
    2-6 frames; cameras follow a Zipf-like law, so one camera dominates unless the planner
    spreads the load.
    """
    rng = np.random.default_rng(seed)
    names = list(PREVALENCE)
    truth = rng.choice(len(names), size=n, p=list(PREVALENCE.values()))
    logits = rng.normal(0.0, 1.0, size=(n, len(names)))
    logits[np.arange(n), truth] += rng.uniform(0.5, 4.0, size=n)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs = np.round(probs, 3)
    camera_weights = 1.0 / np.arange(1, 51)
    camera = rng.choice(50, size=n, p=camera_weights / camera_weights.sum())
    lighting = rng.choice(["day", "night", "dusk", "dawn"], size=n, p=[0.6, 0.2, 0.1, 0.1])
    location = rng.integers(0, 200, size=n)
    in_group = rng.random(n) < 0.4
    group = np.where(in_group, np.arange(n) // rng.integers(2, 7), -1)
    labeled = rng.random(n) < labeled_share
    age = rng.uniform(0, 21 * 24 * 3600, size=n)
    lead = rng.lognormal(0.0, 0.4, size=n)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            record: dict[str, Any] = {
                "id": i + 1,
                "scores": dict(zip(names, probs[i].tolist(), strict=True)),
                "source": {
                    "camera": f"cam{camera[i]}",
                    "lighting": str(lighting[i]),
                    "location": f"loc{location[i]}",
                },
                "dup_group": f"g{group[i]}" if group[i] >= 0 else None,
                "status": "unlabeled",
            }
            if labeled[i]:
                name = names[truth[i]]
                record["status"] = "labeled"
                record["labels"] = [LABEL_VALUE.get(name, name)]
                record["labeled_at"] = (NOW - timedelta(seconds=float(age[i]))).isoformat()
                record["lead_time"] = round(LEAD_SECONDS.get(name, 30.0) * float(lead[i]), 1)
            out.write(json.dumps(record) + "\n")


def floor(path: Path, limit: int) -> None:
    """The floor: read every line, sort by one class's score, print the top ``limit`` ids."""
    ids: list[int] = []
    scores: list[float] = []
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            ids.append(record["id"])
            scores.append(record["scores"].get("bicycle", 0.0))
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")[:limit]
    id_array = np.asarray(ids)
    sys.stdout.write("\n".join(str(i) for i in id_array[order].tolist()) + "\n")


def incremental(path: Path, limit: int) -> None:
    """Time one annotation's update and the next head on a planner built from ``path``."""
    from labelplan.plan import load_plan
    from labelplan.schedule import Planner
    from labelplan.snapshot import read_snapshot

    plan = load_plan(PLAN)
    started = time.perf_counter()
    snapshot = read_snapshot(path, plan)
    read = time.perf_counter() - started
    planner = Planner(snapshot, plan, NOW)
    built = time.perf_counter() - started - read
    first = planner.head(limit)
    first_head = time.perf_counter() - started - read - built
    updates, heads = [], []
    for entry in first.entries[:20]:
        tick = time.perf_counter()
        planner.record_annotation(
            entry.id, ["Bicycle"], labeled_at=NOW - timedelta(minutes=5), lead_time=33.0
        )
        updates.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        planner.head(limit)
        heads.append(time.perf_counter() - tick)
    print(
        json.dumps(
            {
                "read_s": read,
                "build_s": built,
                "first_head_s": first_head,
                "update_ms_median": statistics.median(updates) * 1000,
                "update_ms_max": max(updates) * 1000,
                "head_after_update_s_median": statistics.median(heads),
            }
        )
    )


def _measure(command: list[str], cpu: int, capture: bool = False) -> dict[str, Any]:
    """Run a command pinned to one core; its wall time, own peak RSS and (optionally) stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )
    output = process.stdout.read().decode() if capture and process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {status}")
    return {"wall_s": wall, "peak_mb": usage.ru_maxrss / 1024, "stdout": output}


def run(sizes: list[int], limit: int, workdir: Path, cpu: int) -> dict[str, Any]:
    """Every measurement for every size, in one run."""
    python = sys.executable
    results: list[dict[str, Any]] = []
    workdir.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        path = workdir / f"snapshot-{n}.jsonl"
        if not path.exists():
            generate(n, path)
        floor_run = _measure([python, __file__, "floor", str(path), "--limit", str(limit)], cpu)
        plan_args = ["plan", "--plan", str(PLAN), "--tasks", str(path), "--now", NOW.isoformat()]
        plan_run = _measure(
            [python, "-m", "labelplan.cli", *plan_args, "--limit", str(limit), "--format", "jsonl"],
            cpu,
        )
        inc_run = _measure(
            [python, __file__, "incremental", str(path), "--limit", str(limit)], cpu, capture=True
        )
        results.append(
            {
                "tasks": n,
                "file_mb": path.stat().st_size / 2**20,
                "floor_s": floor_run["wall_s"],
                "floor_peak_mb": floor_run["peak_mb"],
                "plan_s": plan_run["wall_s"],
                "plan_peak_mb": plan_run["peak_mb"],
                "time_ratio": plan_run["wall_s"] / floor_run["wall_s"],
                "memory_ratio": plan_run["peak_mb"] / floor_run["peak_mb"],
                **json.loads(inc_run["stdout"]),
            }
        )
    return {"limit": limit, "cpu": cpu, "runs": results}


def table(report: dict[str, Any]) -> str:
    """The markdown table for docs/benchmarks.md."""
    lines = [
        "| tasks | file | floor wall | floor peak | plan wall | plan peak | time ratio "
        "| read | build | first head | update (median / max) | next head |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['tasks']:,} | {r['file_mb']:.0f} MB | {r['floor_s']:.2f} s "
            f"| {r['floor_peak_mb']:.0f} MB | {r['plan_s']:.2f} s | {r['plan_peak_mb']:.0f} MB "
            f"| {r['time_ratio']:.2f}x | {r['read_s']:.2f} s | {r['build_s']:.2f} s "
            f"| {r['first_head_s']:.2f} s "
            f"| {r['update_ms_median']:.2f} / {r['update_ms_max']:.2f} ms "
            f"| {r['head_after_update_s_median']:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    gen = sub.add_parser("generate", help="write a synthetic snapshot")
    gen.add_argument("n", type=int)
    gen.add_argument("path", type=Path)
    gen.add_argument("--seed", type=int, default=0)
    for name in ("floor", "incremental"):
        child = sub.add_parser(name, help=f"(internal) the {name} measurement")
        child.add_argument("path", type=Path)
        child.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/labelplan-bench"))
    parser.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.n, args.path, seed=args.seed)
    elif args.command == "floor":
        floor(args.path, args.limit)
    elif args.command == "incremental":
        incremental(args.path, args.limit)
    else:
        report = run(args.sizes, args.limit, args.workdir, args.cpu)
        print(json.dumps(report, indent=2))
        print()
        print(table(report))


if __name__ == "__main__":
    main()
