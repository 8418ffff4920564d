"""The demo end to end: Label Studio, the real ML backend and the sync, with simulated annotators.

A small generated image dataset stands in for the example one (the same ``items.jsonl`` format);
everything else is what ``make demo`` runs: its own Label Studio in a data dir, the backend under
gunicorn, ``labelplan sync`` as a separate process. Re-running reuses the data dir and project.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from labelplan.demo import annotators, running_demo, simulate
from labelplan.localstudio import free_port
from labelplan.store import open_store
from labelplan.sync import QUEUE_VERSION

PLAN = """
version: 1
seed: 1
classes:
  cat: {tier: must_not_miss, labels: [Cat], weekly_min: 4}
  dog: {tier: nice_to_have, easy: true, labels: [Dog]}
  bird: {tier: nice_to_have, easy: true, labels: [Bird]}
easy_cap: {per_week: 6}
sources: {keys: [camera], max_share: 0.7}
discovery_reserve: 0.1
control_share: 0.0
"""

COLORS = {"Cat": (200, 40, 40), "Dog": (40, 160, 40), "Bird": (40, 40, 200)}


def build_dataset(root: Path) -> dict[str, str]:
    (root / "images").mkdir(parents=True)
    truth = {}
    lines = []
    labels = ["Cat"] * 4 + ["Dog"] * 14 + ["Bird"] * 18
    for i, label in enumerate(labels):
        image = Image.new("RGB", (64, 64), COLORS[label])
        for x in range(i % 50, i % 50 + 10):
            image.putpixel((x, 5), (255, 255, 255))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        (root / "images" / f"{i}.png").write_bytes(buffer.getvalue())
        item = {
            "id": i + 1,
            "data": {"image": f"images/{i}.png"},
            "label": label,
            "source": {"camera": f"cam-{i % 3}"},
        }
        lines.append(json.dumps(item))
        truth[str(item["id"])] = label
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    return truth


def test_demo_runs_everything_and_reruns_on_the_same_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths, as `make demo` passes them
    dataset = Path("dataset")
    truth = build_dataset(dataset)
    plan_path = Path("plan.yaml")
    plan_path.write_text(PLAN)
    root = Path("demo")
    ports = {"port": free_port(), "media_port": free_port(), "backend_port": free_port()}
    messages: list[str] = []
    with running_demo(dataset, plan_path, root, interval=3, say=messages.append, **ports) as demo:
        project = demo.client.read_project(demo.project_id)
        assert project.sampling == "Uncertainty sampling"
        assert (
            project.model_version == QUEUE_VERSION
        )  # connecting the backend reset it; the sync put it back
        members = annotators(demo, root, 2)
        done = simulate(demo, members, truth, stop_after=8, pause=0.2, say=messages.append)
        assert done == 8
        tasks = list(demo.client.iter_tasks(demo.project_id))
        labeled = [t for t in tasks if t.annotations]
        assert len(labeled) == 8
        # rare first: the must-not-miss class's 4 items are among the first labels served
        cats = sum(t.annotations[0].result[0]["value"]["choices"] == ["Cat"] for t in labeled)
        assert cats >= 3
        project_id = demo.project_id
    hints = json.loads((root / "models" / "cold_start.json").read_text())["classes"]
    assert {label: len(h["examples"]) for label, h in hints.items()} == {
        "Cat": 2,
        "Dog": 2,
        "Bird": 2,
    }
    store = open_store(str(root / "labelplan.sqlite3"))
    assert any(entry.kind == "pass" for entry in store.audit_log(project_id))
    assert store.scores(project_id), "the backend scored the tasks into the shared store"
    store.close()
    with running_demo(dataset, plan_path, root, interval=3, say=messages.append, **ports) as again:
        assert again.project_id == project_id
        assert len(list(again.client.iter_tasks(project_id))) == len(truth)
