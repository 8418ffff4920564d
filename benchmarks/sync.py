"""Sync cost against a real Label Studio 1.23.2 (SQLite), measured in one run.

For each project size N it reports:
- the floor: importing N predictions into an N-task project in one bulk call;
- the initial sync pass of an N-task project (full export, plan, write the queue head, enable),
  and its ratio to the floor (target: <= 1.3x);
- a labeling run of 100 annotations through Label Studio's own ``/next`` endpoint, a sync pass
  after every 5: Label Studio write calls per annotation (target: <= 1 on average) and pass time.

Prints JSON and a markdown table. Run: ``.venv/bin/python benchmarks/sync.py [--sizes 2000,10000]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.scenario import CONFIG, LABEL, SimulatedBackend, street_scenes  # noqa: E402

from labelplan.labelstudio import LabelStudioClient, NewPrediction, choices_result  # noqa: E402
from labelplan.localstudio import LocalStudio  # noqa: E402
from labelplan.store import open_store  # noqa: E402
from labelplan.sync import SyncService, SyncSettings  # noqa: E402

LABELS = 100
EVERY = 5


def measure(client: LabelStudioClient, n: int, workdir: Path) -> dict[str, float]:
    scenario = street_scenes(n=n, rare=max(10, n // 40), lookalikes=max(10, n // 30))
    floor_project = client.create_project(f"floor {n}", CONFIG)
    floor_ids = client.import_tasks(floor_project, scenario.data)
    predictions = [NewPrediction(t, 0.5, "floor") for t in floor_ids]
    started = time.perf_counter()
    client.write_predictions(floor_project, predictions, chunk_size=n)
    floor = time.perf_counter() - started

    project = client.create_project(f"sync {n}", CONFIG)
    ids = client.import_tasks(project, scenario.data)
    store = open_store(str(workdir / f"sync-{n}.sqlite3"))
    backend = SimulatedBackend(store, project, scenario, ids)
    service = SyncService(
        client, store, scenario.plan(), SyncSettings(project, head_size=200), scorer=backend
    )
    started = time.perf_counter()
    first = service.run_pass()
    initial = time.perf_counter() - started

    truth = dict(zip(ids, scenario.truth, strict=True))
    control = client.read_project(project).taxonomy.controls["label"]
    writes = 0
    pass_seconds = []
    for i in range(LABELS):
        task = client.next_task(project)
        assert task is not None
        client.submit_annotation(
            task.id, choices_result(control, [LABEL[truth[task.id]]]), lead_time=3.0
        )
        if (i + 1) % EVERY == 0:
            started = time.perf_counter()
            writes += service.run_pass().writes
            pass_seconds.append(time.perf_counter() - started)
    store.close()
    return {
        "tasks": n,
        "floor_import_s": round(floor, 2),
        "initial_sync_s": round(initial, 2),
        "initial_ratio": round(initial / floor, 2),
        "initial_calls": sum(first.calls.values()),
        "writes_per_annotation": round(writes / LABELS, 2),
        "median_pass_s": round(sorted(pass_seconds)[len(pass_seconds) // 2], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalStudio(Path(tmp) / "ls").start()
        try:
            client = LabelStudioClient(server.url, server.token)
            rows = [measure(client, n, Path(tmp)) for n in sizes]
        finally:
            server.stop()
    print(json.dumps(rows, indent=2))
    print()
    print(
        "| tasks | floor: import N predictions | initial sync | ratio (target ≤ 1.3) | calls | writes / annotation (target ≤ 1) | median pass |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tasks']:,} | {r['floor_import_s']} s | {r['initial_sync_s']} s | {r['initial_ratio']}x | "
            f"{r['initial_calls']} | {r['writes_per_annotation']} | {r['median_pass_s']} s |"
        )


if __name__ == "__main__":
    main()
