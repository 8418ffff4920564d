"""The planner on small hand-made snapshots: each lane, the mixing math, the ledger, the reader."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelplan.lanes import Board, uniform_keys
from labelplan.ledger import week_of
from labelplan.plan import Plan
from labelplan.schedule import Planner, PlannerError, plan_queue
from labelplan.snapshot import SnapshotError, read_snapshot, snapshot_from_records
from tests.unit.synthetic import NOW, make_plan, records


def task(i: int, **scores: float) -> dict[str, Any]:
    """An open task with the given class scores and no source or group."""
    return {"id": i, "scores": scores}


def labeled(i: int, label: str, when: datetime, lead_time: float = 30.0, **extra: Any) -> dict:
    return {
        "id": i,
        "scores": {},
        "status": "labeled",
        "labels": [label],
        "labeled_at": when.isoformat(),
        "lead_time": lead_time,
        **extra,
    }


CLASSES: dict[str, Any] = {
    "car": {"tier": "nice_to_have", "easy": True, "labels": ["Car"]},
    "person": {"tier": "nice_to_have", "easy": True},
    "bicycle": {"tier": "must_not_miss", "labels": ["Bicycle", "Bike"], "weekly_min": 8},
    "stop_sign": {"tier": "must_not_miss", "weekly_min": 6},
    "dog": {"tier": "experimental", "weekly_min": 2},
}


def plain_plan(**sections: Any) -> Plan:
    """No reserved lanes and no source keys unless asked: quota and easy lanes mixing alone."""
    classes = sections.pop("classes", CLASSES)
    classes = {
        name: {**spec, "hard_negative_share": 0} if not spec.get("easy") else spec
        for name, spec in classes.items()
    }
    merged: dict[str, Any] = {"discovery_reserve": 0, "control_share": 0, "sources": {"keys": []}}
    return make_plan(**{**merged, **sections, "classes": classes})


def test_quota_entries_say_where_the_class_stands_this_week() -> None:
    plan = plain_plan()
    tasks = [labeled(1, "Bike", NOW - timedelta(hours=2)), task(2, bicycle=0.9, car=0.1)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 1)
    [entry] = queue.entries
    assert (entry.id, entry.lane) == (2, "quota:bicycle")
    assert entry.reason.startswith("quota: bicycle is 1 of 8 this week (1 labeled")
    assert "p(bicycle)=0.90" in entry.reason


def test_easy_classes_wait_until_rare_quota_is_met() -> None:
    plan = plain_plan(easy_cap={"per_week": 2})
    tasks = [task(i, car=0.9, bicycle=0.01) for i in range(1, 11)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 10)
    lanes = Counter(e.lane for e in queue.entries)
    # No task can fill the bicycle quota, so the easy lane stops at its cap and the head ends.
    assert lanes == {"easy": 2}
    assert (
        queue.summary.ended_because and "easy lane reached its cap" in queue.summary.ended_because
    )


def test_the_easy_lane_opens_once_must_not_miss_quotas_are_met() -> None:
    plan = plain_plan(easy_cap={"per_week": 0})
    tasks = [labeled(i, "bicycle", NOW - timedelta(hours=1)) for i in range(1, 9)]
    tasks += [labeled(i, "stop_sign", NOW - timedelta(hours=1)) for i in range(9, 15)]
    tasks += [task(i, car=0.8, person=0.2) for i in range(20, 25)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 5)
    assert [e.lane for e in queue.entries] == ["easy"] * 5
    assert "must-not-miss quotas are met" in queue.entries[0].reason


def test_labels_from_last_week_do_not_count_toward_this_weeks_quota() -> None:
    plan = plain_plan()
    tasks = [labeled(i, "bicycle", NOW - timedelta(days=8)) for i in range(1, 9)]
    tasks.append(task(50, bicycle=0.9))
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 1)
    bicycle = next(s for s in queue.summary.classes if s.name == "bicycle")
    assert bicycle.labeled == 0
    assert "is 0 of 8" in queue.entries[0].reason


def test_a_lane_whose_items_take_longer_gets_fewer_entries_for_the_same_claim() -> None:
    classes = {
        "car": {"tier": "nice_to_have", "easy": True},
        "person": {"tier": "nice_to_have", "easy": True},
        "bicycle": {"tier": "must_not_miss", "weekly_min": 1000},
        "stop_sign": {"tier": "must_not_miss", "weekly_min": 1000},
        "dog": {"tier": "experimental", "weekly_min": 0},
    }
    plan = plain_plan(classes=classes)
    last_week = NOW - timedelta(days=10)
    tasks = [labeled(1, "bicycle", last_week, lead_time=60.0)]
    tasks.append(labeled(2, "stop_sign", last_week, lead_time=20.0))
    tasks += [task(100 + i, bicycle=0.06) for i in range(300)]  # little expected progress
    tasks += [task(1000 + i, stop_sign=0.06) for i in range(300)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 200)
    lanes = Counter(e.lane for e in queue.entries)
    assert lanes["quota:stop_sign"] / lanes["quota:bicycle"] == pytest.approx(3.0, rel=0.1)


def test_a_bigger_deficit_claims_more_of_the_queue() -> None:
    classes = {
        "car": {"tier": "nice_to_have", "easy": True},
        "person": {"tier": "nice_to_have", "easy": True},
        "bicycle": {"tier": "must_not_miss", "weekly_min": 400},
        "stop_sign": {"tier": "must_not_miss", "weekly_min": 100},
        "dog": {"tier": "experimental", "weekly_min": 0},
    }
    plan = plain_plan(classes=classes)
    tasks = [task(i, bicycle=0.02) for i in range(400)]
    tasks += [task(1000 + i, stop_sign=0.02) for i in range(400)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 100)
    lanes = Counter(e.lane for e in queue.entries)
    assert lanes["quota:bicycle"] == pytest.approx(4 * lanes["quota:stop_sign"], rel=0.15)


def test_a_shortage_recommends_widening_collection() -> None:
    plan = plain_plan()
    tasks = [task(1, bicycle=0.5), task(2, bicycle=0.3), task(3, car=0.9)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 10)
    shortage = {s.name: s.shortage for s in queue.summary.shortages}
    assert "bicycle" in shortage
    assert "widen collection" in (shortage["bicycle"] or "")
    assert "car" not in shortage  # easy classes have no quota to miss


def test_near_duplicates_of_a_scene_are_capped_counting_this_weeks_labels() -> None:
    plan = plain_plan(near_duplicates={"per_week": 2, "overall": 5})
    tasks = [labeled(1, "bicycle", NOW - timedelta(hours=3), dup_group="scene")]
    tasks += [{**task(10 + i, bicycle=0.9 - i / 100), "dup_group": "scene"} for i in range(5)]
    tasks.append(task(99, bicycle=0.2))
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 10)
    assert queue.ids == [10, 99]


def test_quota_lane_spreads_a_class_over_cameras() -> None:
    plan = plain_plan(sources={"keys": ["camera"], "max_share": 0.5})
    tasks = [
        {**task(i, bicycle=0.99 - i / 1000), "source": {"camera": "front"}} for i in range(1, 7)
    ]
    tasks += [{**task(100 + i, bicycle=0.3), "source": {"camera": "rear"}} for i in range(3)]
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 6)
    cameras = ["front" if e.id < 100 else "rear" for e in queue.entries]
    assert cameras == ["front", "rear", "front", "rear", "front", "rear"]


def test_hard_negatives_look_like_the_class_but_are_likely_something_else() -> None:
    plan = make_plan(discovery_reserve=0, control_share=0, sources={"keys": []})
    tasks = [task(1, bicycle=0.45, car=0.55), task(2, bicycle=0.6, car=0.4)]
    tasks += [task(3, bicycle=0.1, car=0.9), task(4, car=0.95, bicycle=0.05)]
    snapshot = snapshot_from_records(tasks, plan)
    planner = Planner(snapshot, plan, NOW)
    lane = next(lane for lane in planner.reserved if lane.name == "hard_negative:bicycle")
    rows, _ = lane.rank(planner.context)
    assert snapshot.ids[rows].tolist() == [1]
    reason = lane.reason(int(rows[0]), Board(planner.context), False)
    assert reason == "hard negative for bicycle: p(bicycle)=0.45 but most likely car (0.55)"


def test_control_sample_is_reproducible_and_changes_with_the_seed() -> None:
    tasks = records(400, seed=5)
    first = make_plan(control_share=0.5, seed=1)
    queue = plan_queue(snapshot_from_records(tasks, first), first, NOW, 100)
    again = plan_queue(snapshot_from_records(tasks, first), first, NOW, 100)
    other = make_plan(control_share=0.5, seed=2)
    reseeded = plan_queue(snapshot_from_records(tasks, other), other, NOW, 100)

    def control(q: Any) -> list[int]:
        return [e.id for e in q.entries if e.lane == "control"]

    assert control(queue) == control(again)
    assert control(queue) != control(reseeded)


def test_uniform_keys_are_uniform_and_fixed_per_task() -> None:
    ids = np.arange(1, 100_001, dtype=np.int64)
    u = uniform_keys(ids, seed=3, salt=2)
    assert u.min() > 0.0 and u.max() < 1.0
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(counts - 10_000) < 500)  # ~5 standard deviations
    assert uniform_keys(ids[500:600], seed=3, salt=2).tolist() == u[500:600].tolist()


def test_the_week_starts_on_the_plans_day_at_local_midnight() -> None:
    plan = make_plan(week={"start": "sunday", "timezone": "America/New_York"})
    week = week_of(datetime(2024, 5, 8, 3, 30, tzinfo=UTC), plan)  # Tue 23:30 in New York
    assert week.start.isoformat() == "2024-05-05T00:00:00-04:00"
    assert week.end.isoformat() == "2024-05-12T00:00:00-04:00"


def test_recording_an_annotation_moves_the_quota_and_removes_the_task() -> None:
    plan = plain_plan()
    tasks = [task(1, bicycle=0.9), task(2, bicycle=0.8)]
    planner = Planner(snapshot_from_records(tasks, plan), plan, NOW)
    planner.record_annotation(1, ["Bicycle"], labeled_at=NOW, lead_time=12.0)
    queue = planner.head(5)
    assert queue.ids == [2]
    assert "is 1 of 8 this week (1 labeled" in queue.entries[0].reason
    with pytest.raises(PlannerError, match="already labeled"):
        planner.record_annotation(1, ["Bicycle"])
    with pytest.raises(PlannerError, match="not in the snapshot"):
        planner.record_annotation(404, ["Bicycle"])


def test_snapshot_errors_name_the_line_and_the_field(tmp_path: Path) -> None:
    plan = make_plan()
    cases = {
        '{"scores": {}}': "missing field 'id'",
        '{"id": 1, "scores": {"bicycle": 1.5}}': "probabilities in [0, 1]",
        '{"id": 1, "status": "done"}': "allowed: unlabeled, labeled",
        '{"id": 1, "status": "labeled", "labeled_at": "yesterday"}': "ISO 8601",
        '{"id": "a"}': "integer",
        "{not json": "not a JSON object",
    }
    for line, message in cases.items():
        path = tmp_path / "snapshot.jsonl"
        path.write_text('{"id": 99}\n' + line + "\n")
        with pytest.raises(SnapshotError) as caught:
            read_snapshot(path, plan)
        assert message in str(caught.value), line
        if "integer" not in message:
            assert ":2:" in str(caught.value)


def test_repeated_task_ids_are_rejected() -> None:
    with pytest.raises(SnapshotError, match="more than once"):
        snapshot_from_records([{"id": 1}, {"id": 1}], make_plan())


def test_the_reader_maps_label_studio_values_and_ignores_unknown_keys(tmp_path: Path) -> None:
    plan = make_plan()
    path = tmp_path / "snapshot.jsonl"
    path.write_text(
        '{"id": 5, "scores": {"bicycle": 0.2, "zebra": 0.7}, "source": {"camera": "c1"},'
        ' "status": "labeled", "labels": ["Bike", "Zebra"], "labeled_at": "2024-05-07T09:00:00Z",'
        ' "lead_time": 17, "data": {"image": "x.jpg"}}\n'
    )
    snapshot = read_snapshot(path, plan)
    assert snapshot.labels[0] == (plan.class_names.index("bicycle"),)
    assert snapshot.unmapped_labels == 1
    assert snapshot.scores[0].tolist() == pytest.approx([0, 0, 0.2, 0, 0])
    assert snapshot.source_values[0] == ("c1",)
    assert snapshot.lead_time[0] == 17.0
