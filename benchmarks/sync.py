"""Sync cost against a real Label Studio 1.23.2 (SQLite), measured in one run.

For each project size N it reports:
- the floor: importing N predictions into an N-task project in one bulk call;
- the initial sync pass of an N-task project (full export, plan, write the queue head, enable),
  and its ratio to the floor (target: <= 1.3x);
- a labeling run of 100 annotations through Label Studio's own ``/next`` endpoint, a sync pass
  after every 5: Label Studio write calls per annotation (target: <= 1 on average) and pass time.

With ``--review`` each size is measured twice in the same run, without and with a ``review``
section (default rates): the difference is what review costs (re-opening sampled tasks, ranking
them, the tabs, the metrics block in the description).

Prints JSON and a markdown table. Run:
``.venv/bin/python benchmarks/sync.py [--sizes 2000,10000] [--review]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.scenario import (  # noqa: E402
    CONFIG,
    LABEL,
    PLAN,
    SimulatedBackend,
    street_scenes,
)

from labelplan.labelstudio import LabelStudioClient, NewPrediction, choices_result  # noqa: E402
from labelplan.localstudio import LocalStudio  # noqa: E402
from labelplan.plan import parse_plan  # noqa: E402
from labelplan.store import open_store  # noqa: E402
from labelplan.sync import SyncService, SyncSettings  # noqa: E402

LABELS = 100
EVERY = 5


def measure(
    client: LabelStudioClient, n: int, workdir: Path, *, review: bool = False
) -> dict[str, float]:
    scenario = street_scenes(n=n, rare=max(10, n // 40), lookalikes=max(10, n // 30))
    floor_project = client.create_project(f"floor {n}", CONFIG)
    floor_ids = client.import_tasks(floor_project, scenario.data)
    predictions = [NewPrediction(t, 0.5, "floor") for t in floor_ids]
    started = time.perf_counter()
    client.write_predictions(floor_project, predictions, chunk_size=n)
    floor = time.perf_counter() - started

    project = client.create_project(f"sync {n}", CONFIG)
    ids = client.import_tasks(project, scenario.data)
    store = open_store(str(workdir / f"sync-{n}-{'review' if review else 'plain'}.sqlite3"))
    backend = SimulatedBackend(store, project, scenario, ids)
    plan = parse_plan(PLAN + "review: {}\n") if review else scenario.plan()
    service = SyncService(client, store, plan, SyncSettings(project, head_size=200), scorer=backend)
    started = time.perf_counter()
    first = service.run_pass()
    initial = time.perf_counter() - started

    truth = dict(zip(ids, scenario.truth, strict=True))
    control = client.read_project(project).taxonomy.controls["label"]
    writes = 0
    sampled = 0
    methods: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    step_seconds: dict[str, list[float]] = {}
    pass_seconds = []
    for i in range(LABELS):
        task = client.next_task(project)
        assert task is not None
        client.submit_annotation(
            task.id, choices_result(control, [LABEL[truth[task.id]]]), lead_time=3.0
        )
        if (i + 1) % EVERY == 0:
            started = time.perf_counter()
            report = service.run_pass()
            writes += report.writes
            sampled += int(report.review.get("sampled", 0))
            methods.update(report.calls)
            for step, seconds in report.seconds.items():
                step_seconds.setdefault(step, []).append(seconds)
            steps.update({k: v for k, v in report.review.items() if isinstance(v, int)})
            pass_seconds.append(time.perf_counter() - started)
    store.close()
    return {
        "tasks": n,
        "review": review,
        "sampled": sampled,
        "floor_import_s": round(floor, 2),
        "initial_sync_s": round(initial, 2),
        "initial_ratio": round(initial / floor, 2),
        "initial_calls": sum(first.calls.values()),
        "writes_per_annotation": round(writes / LABELS, 2),
        "median_pass_s": round(sorted(pass_seconds)[len(pass_seconds) // 2], 2),
        "calls_while_labeling": dict(sorted(methods.items())),
        "review_steps": dict(sorted(steps.items())),
        "median_step_s": {k: round(sorted(v)[len(v) // 2], 3) for k, v in step_seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--review", action="store_true", help="also measure with review on")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalStudio(Path(tmp) / "ls").start()
        try:
            client = LabelStudioClient(server.url, server.token)
            rows = [
                measure(client, n, Path(tmp), review=review)
                for n in sizes
                for review in ((False, True) if args.review else (False,))
            ]
        finally:
            server.stop()
    print(json.dumps(rows, indent=2))
    print()
    print(
        "| tasks | review | floor: import N predictions | initial sync | ratio (target ≤ 1.3) | calls | writes / annotation (target ≤ 1) | sampled | median pass |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tasks']:,} | {'on' if r['review'] else 'off'} | {r['floor_import_s']} s | "
            f"{r['initial_sync_s']} s | {r['initial_ratio']}x | {r['initial_calls']} | "
            f"{r['writes_per_annotation']} | {r['sampled']} | {r['median_pass_s']} s |"
        )


if __name__ == "__main__":
    main()
