"""The simulation: strategies serve as Label Studio would, labelplan finds the rare class, the
replay is reproducible, and a malformed dataset says which line and field to fix."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from labelplan.cli import app
from labelplan.dataset import Dataset, DatasetError, Features, Item, read_dataset
from labelplan.plan import Plan
from labelplan.simulate import (
    Settings,
    World,
    build_world,
    markdown_table,
    simulate,
    split_dataset,
    weekly_quotas,
    write_outputs,
)
from labelplan.strategies import (
    Labelplan,
    Sequential,
    Uncertainty,
    Uniform,
    View,
    make_strategy,
)

pytest.importorskip("sklearn")
pytest.importorskip("labelplan_backend.head")

CLASSES = ("common", "other", "rare")


def toy_plan(**sections: object) -> Plan:
    data: dict[str, object] = {
        "seed": 3,
        "week": {"start": "monday", "timezone": "UTC"},
        "classes": {
            "common": {"tier": "nice_to_have", "easy": True},
            "other": {"tier": "nice_to_have", "weekly_min": 3},
            "rare": {"tier": "must_not_miss", "weekly_min": 6},
        },
        "easy_cap": {"per_week": 10},
        "sources": {"keys": ["camera"], "max_share": 0.6},
    }
    data.update(sections)
    return Plan.model_validate(data)


def toy_dataset(n: int = 400, seed: int = 0) -> tuple[Dataset, Features]:
    """90 % common, 7 % other, 3 % rare, in random id order; separable 16-d features; every
    fifth item a near-copy of the one before (same perceptual hash)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(CLASSES, size=n, p=[0.9, 0.07, 0.03])
    centers = rng.normal(size=(3, 16)) * 3
    matrix = np.abs(centers[[CLASSES.index(x) for x in labels]] + rng.normal(size=(n, 16)))
    hashes = rng.integers(0, 2**63, size=n)
    items, keys = [], []
    for i, label in enumerate(labels):
        camera = f"cam{i % 4}"
        items.append(
            Item(
                i + 1, {"text": f"item {i}", "camera": camera}, str(label), {"camera": camera}, None
            )
        )
        keys.append(f"{int(hashes[i - 1 if i % 5 == 4 else i]):016x}")
    dataset = Dataset(root=Path("."), items=tuple(items), data_key="text")
    return dataset, Features("toy", matrix.astype(np.float32), keys)


def view_of(ids: list[int], probs: list[list[float]] | None = None) -> View:
    n = len(ids)
    table = np.array(probs if probs is not None else [[1 / 3] * 3] * n, dtype=np.float64)
    return View(
        ids=np.array(ids, dtype=np.int64),
        data=[{"text": str(i)} for i in ids],
        classes=CLASSES,
        probs=table,
        model_version="sim.1",
        dup_groups=[None] * n,
        open=np.ones(n, dtype=bool),
        now=datetime(2024, 1, 3, tzinfo=UTC),
    )


# --------------------------------------------------------------------------- Label Studio's three


def test_sequential_serves_open_tasks_in_id_order_whatever_the_file_order() -> None:
    view = view_of([30, 10, 20, 40])
    view.open[1] = False  # task 10 is labeled
    picks = Sequential().select(view, 3)
    assert [int(view.ids[p.row]) for p in picks] == [20, 30, 40]


def test_uncertainty_serves_the_lowest_top_probability_first_and_ties_by_id() -> None:
    view = view_of(
        [5, 6, 7, 8],
        [[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.6, 0.2, 0.2], [0.4, 0.35, 0.25]],
    )
    picks = Uncertainty().select(view, 4)
    assert [int(view.ids[p.row]) for p in picks] == [6, 8, 7, 5]


def test_uniform_draws_open_tasks_without_repeats_and_repeats_itself_for_a_seed() -> None:
    view = view_of(list(range(1, 201)))
    view.open[:100] = False
    first = [p.row for p in Uniform(seed=4).select(view, 50)]
    assert len(set(first)) == 50 and min(first) >= 100
    assert first == [p.row for p in Uniform(seed=4).select(view, 50)]
    assert first != [p.row for p in Uniform(seed=5).select(view, 50)]
    assert first != sorted(first)  # not id order


def test_labelplan_serves_the_planners_head_and_names_the_lane() -> None:
    probs = [[0.9, 0.05, 0.05]] * 30 + [[0.05, 0.05, 0.9]] * 5
    view = view_of(list(range(1, 36)), probs)
    picks = Labelplan(toy_plan(), head_size=20, seed=0).select(view, 8)
    assert len({p.row for p in picks}) == 8
    assert all(p.lane for p in picks)
    rare_rows = set(range(30, 35))
    assert {p.row for p in picks if p.lane == "quota:rare"} <= rare_rows
    assert sum(p.row in rare_rows for p in picks) >= 4


def test_labelplan_falls_back_to_random_open_tasks_when_the_head_runs_dry() -> None:
    plan = toy_plan(
        easy_cap={"per_week": 1},
        discovery_reserve=0.0,
        control_share=0.0,
        selection={"min_score": 0.5},
    )
    view = view_of(list(range(1, 11)), [[0.9, 0.05, 0.05]] * 10)
    picks = Labelplan(plan, head_size=10, seed=0).select(view, 5)
    assert len({p.row for p in picks}) == 5
    assert [p.lane for p in picks].count("fallback:random") == 4


def test_make_strategy_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'margin'"):
        make_strategy("margin", toy_plan(), seed=0, head_size=10)


# --------------------------------------------------------------------------- the replay


@pytest.fixture(scope="module")
def toy_report() -> dict[str, object]:
    dataset, features = toy_dataset()
    plan = toy_plan()
    settings = Settings(budget=90, week_size=30, refit_every=30, pass_every=10, seed=1)
    strategies = [make_strategy(n, plan, seed=1, head_size=50) for n in ("labelplan", "sequential")]
    return simulate(dataset, features, plan, strategies, settings)


def test_labelplan_finds_more_rare_items_than_sequential_on_an_imbalanced_set(
    toy_report: dict[str, object],
) -> None:
    runs = toy_report["strategies"]
    assert isinstance(runs, dict)
    labelplan = runs["labelplan"]["checkpoints"][-1]["found"]["rare"]
    sequential = runs["sequential"]["checkpoints"][-1]["found"]["rare"]
    assert labelplan >= sequential + 3, (labelplan, sequential)


def test_every_strategy_labels_the_budget_once_and_reports_each_checkpoint(
    toy_report: dict[str, object],
) -> None:
    runs = toy_report["strategies"]
    assert isinstance(runs, dict)
    for run in runs.values():
        assert run["labels"] == 90 and len(set(run["order"])) == 90
        assert [c["labels"] for c in run["checkpoints"]] == [30, 60, 90]
        assert [w["week"] for w in run["weeks"]] == [1, 2, 3]
        assert len(run["curve"]["rare"]) == 90
        final = run["checkpoints"][-1]
        assert set(final["classifier"]["classes"]) == set(CLASSES)
        assert 0.0 <= final["near_duplicate_share"] <= 1.0
    assert runs["sequential"]["lanes"] == {}
    assert any(lane.startswith("quota:rare") for lane in runs["labelplan"]["lanes"])


def test_the_replay_is_the_same_for_the_same_seed(toy_report: dict[str, object]) -> None:
    dataset, features = toy_dataset()
    plan = toy_plan()
    settings = Settings(budget=90, week_size=30, refit_every=30, pass_every=10, seed=1)
    strategies = [make_strategy(n, plan, seed=1, head_size=50) for n in ("labelplan", "sequential")]
    again = simulate(dataset, features, plan, strategies, settings)
    assert json.dumps(again, sort_keys=True) == json.dumps(toy_report, sort_keys=True)


def test_split_holds_out_whole_near_duplicate_groups_and_every_class() -> None:
    labels = ["a"] * 40 + ["b"] * 8
    groups = [f"g{i // 4}" for i in range(40)] + [None] * 8
    split = split_dataset(labels, groups, 0.25, seed=0)
    test = set(split.test.tolist())
    assert test.isdisjoint(split.pool.tolist())
    assert len(test) + len(split.pool) == 48
    for g in {g for g in groups if g}:
        members = {i for i, x in enumerate(groups) if x == g}
        assert members <= test or members.isdisjoint(test)
    assert any(labels[i] == "b" for i in test) and any(labels[i] == "b" for i in split.pool)
    assert 8 <= sum(labels[i] == "a" for i in test) <= 12


def test_weekly_quotas_count_each_week_on_its_own() -> None:
    dataset, features = toy_dataset()
    world: World = build_world(dataset, features, toy_plan(), Settings(budget=10, week_size=5))
    rare = [r for r, c in enumerate(world.classes) if c == "rare"][:6]
    common = [r for r, c in enumerate(world.classes) if c == "common"][:4]
    weeks = weekly_quotas(world, [*rare[:5], *common[:4], rare[5]])
    assert [w["quotas"]["rare"]["labeled"] for w in weeks] == [5, 1]
    assert weeks[0]["quotas"]["rare"]["attainment"] == pytest.approx(5 / 6, abs=1e-4)
    assert "common" not in weeks[0]["quotas"]  # easy classes have no quota


def test_outputs_are_json_markdown_and_two_plots(
    toy_report: dict[str, object], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    written = write_outputs(toy_report, tmp_path)
    assert {p.name for p in written} == {
        "report.json",
        "report.md",
        "rare_found.png",
        "f1_per_class.png",
    }
    assert json.loads((tmp_path / "report.json").read_text())["settings"]["budget"] == 90
    table = markdown_table(toy_report)
    assert table.splitlines()[0].startswith("| strategy | labels | rare found |")
    assert table.count("\n| labelplan |") + table.startswith("| labelplan") == 1
    assert (tmp_path / "rare_found.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------- the dataset format


def write_items(root: Path, lines: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "items.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_a_dataset_reads_sources_into_task_data(tmp_path: Path) -> None:
    root = write_items(
        tmp_path / "d",
        [
            json.dumps(
                {"id": 2, "data": {"text": "b"}, "label": "rare", "source": {"camera": "c1"}}
            ),
            json.dumps(
                {
                    "id": 1,
                    "data": {"text": "a"},
                    "label": "common",
                    "created_at": "2024-01-02T00:00:00Z",
                }
            ),
        ],
    )
    dataset = read_dataset(root)
    assert dataset.data_key == "text"
    assert dataset.items[0].data == {"camera": "c1", "text": "b"}
    assert dataset.items[1].created_at == datetime(2024, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "7", "data": {"text": "a"}, "label": "x"}', "items.jsonl:2: field 'id'"),
        ('{"id": 7, "data": {"text": "a"}}', "items.jsonl:2: field 'label'"),
        ('{"id": 7, "data": "a", "label": "x"}', "items.jsonl:2: field 'data'"),
        (
            '{"id": 7, "data": {"image": "nope.png"}, "label": "x"}',
            "items.jsonl:2: field 'data': holds 'image' but earlier items hold 'text'",
        ),
        (
            '{"id": 1, "data": {"text": "a"}, "label": "x"}',
            "field 'id': 1 is already used on line 1",
        ),
        (
            '{"id": 7, "data": {"text": "a"}, "label": "x", "created_at": "May"}',
            "field 'created_at'",
        ),
        ('{"id": 7, "data": {"text": "a"}, "label": "x", "source": {"c": [1]}}', "field 'source'"),
        ("{not json", "items.jsonl:2: not a JSON object"),
    ],
)
def test_a_malformed_dataset_names_the_line_and_the_field(
    tmp_path: Path, line: str, message: str
) -> None:
    root = write_items(tmp_path / "d", ['{"id": 1, "data": {"text": "a"}, "label": "x"}', line])
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dataset(root)


def test_simulate_command_explains_a_bad_dataset_and_a_bad_strategy(tmp_path: Path) -> None:
    runner = CliRunner()
    plan = Path(__file__).resolve().parents[2] / "examples" / "emoji" / "plan.yaml"
    missing = runner.invoke(
        app, ["simulate", "--plan", str(plan), "--dataset", str(tmp_path), "--budget", "10"]
    )
    assert missing.exit_code == 2
    said = " ".join(missing.stderr.split())
    assert "items.jsonl does not exist" in said
    assert "python examples/emoji/build.py" in said
    wrong = runner.invoke(
        app,
        [
            "simulate",
            "--plan",
            str(plan),
            "--dataset",
            str(tmp_path),
            "--budget",
            "10",
            "--strategies",
            "random",
        ],
    )
    assert wrong.exit_code == 2
    said = " ".join(wrong.stderr.split())
    assert "--strategies takes labelplan, sequential, uniform, uncertainty; got 'random'" in said


def test_a_dataset_label_the_plan_does_not_know_stops_the_simulation() -> None:
    dataset, features = toy_dataset(n=50)
    plan = Plan.model_validate(
        {"classes": {"common": {"tier": "nice_to_have"}, "rare": {"tier": "must_not_miss"}}}
    )
    with pytest.raises(ValueError, match="labels 'other' are not classes or labels of the plan"):
        build_world(dataset, features, plan, Settings(budget=10))
