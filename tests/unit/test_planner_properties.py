"""What must hold for every snapshot: the planner's contract, checked on generated snapshots.

Each property recomputes what it checks from the snapshot itself (history, caps, shares) rather
than trusting the planner's own summary.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelplan.ledger import week_of
from labelplan.plan import Plan
from labelplan.schedule import Planner, plan_queue
from labelplan.snapshot import snapshot_from_records
from tests.unit.synthetic import EASY, MUST_NOT_MISS, NOW, make_plan, numpy_seeds, records

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _this_week(tasks: list[dict], plan: Plan) -> list[dict]:
    """Tasks labeled in the week that contains NOW."""
    week = week_of(NOW, plan)
    return [
        t
        for t in tasks
        if t["status"] == "labeled"
        and week.contains(datetime.fromisoformat(t["labeled_at"]).timestamp())
    ]


@PROPERTY
@given(seed=numpy_seeds, n=st.integers(5, 250), limit=st.integers(0, 300))
def test_no_task_is_queued_twice_and_labeled_tasks_never_are(seed: int, n: int, limit: int) -> None:
    tasks = records(n, seed)
    plan = make_plan()
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit)
    ids = queue.ids
    labeled = {t["id"] for t in tasks if t["status"] == "labeled"}
    assert len(ids) == len(set(ids))
    assert not labeled & set(ids)
    assert len(ids) <= limit
    assert [e.rank for e in queue.entries] == list(range(1, len(ids) + 1))


@PROPERTY
@given(
    seed=numpy_seeds,
    n=st.integers(20, 300),
    cap=st.integers(0, 40),
    bicycle=st.integers(1, 30),
    stop_sign=st.integers(1, 30),
)
def test_easy_lane_waits_for_must_not_miss_quotas_and_quotas_with_candidates_are_met(
    seed: int, n: int, cap: int, bicycle: int, stop_sign: int
) -> None:
    tasks = records(n, seed, dup_share=0.0)
    plan = make_plan(
        easy_cap={"per_week": cap},
        classes={
            "car": {"tier": "nice_to_have", "easy": True, "labels": ["Car"]},
            "person": {"tier": "nice_to_have", "easy": True},
            "bicycle": {"tier": "must_not_miss", "weekly_min": bicycle},
            "stop_sign": {"tier": "must_not_miss", "weekly_min": stop_sign},
            "dog": {"tier": "experimental"},
        },
    )
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit=n)
    index = {c: i for i, c in enumerate(plan.class_names)}
    week = _this_week(tasks, plan)
    count = Counter(label for t in week for label in t["labels"])
    quota = {"bicycle": bicycle, "stop_sign": stop_sign}
    expected = {c: float(count[c]) for c in MUST_NOT_MISS}
    easy = sum(1 for t in week if set(t["labels"]) & set(EASY))
    scores = {t["id"]: t["scores"] for t in tasks}
    met = all(expected[c] >= quota[c] for c in MUST_NOT_MISS)
    for entry in queue.entries:
        if entry.lane == "easy" and not met:
            easy += 1
            assert easy <= cap, f"easy entry {entry.rank} passes the cap before quotas are met"
        for c in MUST_NOT_MISS:
            expected[c] += np.float32(scores[entry.id][c])
        met = met or all(expected[c] >= quota[c] - 1e-9 for c in MUST_NOT_MISS)
    open_tasks = [t for t in tasks if t["status"] == "unlabeled"]
    min_score = plan.selection.min_score
    for c in MUST_NOT_MISS:
        reachable = sum(
            float(np.float32(t["scores"][c]))
            for t in open_tasks
            if np.float32(t["scores"][c]) >= min_score
        )
        if count[c] + reachable >= quota[c] + 1e-6:
            assert expected[c] >= quota[c] - 1e-6, f"{c} had the candidates but missed its quota"
    assert index  # the plan names the classes the test talks about


@PROPERTY
@given(
    seed=numpy_seeds,
    n=st.integers(10, 250),
    per_week=st.integers(1, 4),
    extra=st.integers(0, 4),
)
def test_no_near_duplicate_group_passes_its_caps(
    seed: int, n: int, per_week: int, extra: int
) -> None:
    tasks = records(n, seed, dup_share=0.8, labeled_share=0.3)
    plan = make_plan(near_duplicates={"per_week": per_week, "overall": per_week + extra})
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit=n)
    group = {t["id"]: t["dup_group"] for t in tasks}
    week = Counter(t["dup_group"] for t in _this_week(tasks, plan) if t["dup_group"])
    ever = Counter(t["dup_group"] for t in tasks if t["status"] == "labeled" and t["dup_group"])
    served = Counter(group[i] for i in queue.ids if group[i])
    for g, count in served.items():
        assert count <= max(0, per_week - week[g]), g
        assert count <= max(0, per_week + extra - ever[g]), g


@PROPERTY
@given(
    seed=numpy_seeds,
    n=st.integers(10, 250),
    share=st.sampled_from([0.2, 0.3, 0.4, 0.6]),
    cameras=st.integers(1, 8),
)
def test_no_source_value_passes_its_share_when_an_alternative_exists(
    seed: int, n: int, share: float, cameras: int
) -> None:
    tasks = records(n, seed, cameras=cameras, dup_share=0.2)
    plan = make_plan(sources={"keys": ["camera", "lighting"], "max_share": share})
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit=n)
    by_id = {t["id"]: t for t in tasks}
    keys = plan.sources.keys
    week = _this_week(tasks, plan)
    ever = [t for t in tasks if t["status"] == "labeled"]
    served: set[int] = set()
    dup_week = Counter(t["dup_group"] for t in week if t["dup_group"])
    dup_ever = Counter(t["dup_group"] for t in ever if t["dup_group"])
    per = {c: Counter() for c in plan.class_names}
    total = Counter()
    for t in week:
        for c in t["labels"]:
            total[c] += 1
            for key in keys:
                per[c][key, t["source"][key]] += 1

    def fits(task: dict, c: str) -> bool:
        allowed = max(1.0, share * (total[c] + 1))
        return all(per[c][key, task["source"][key]] + 1 <= allowed for key in keys)

    def alive(task: dict) -> bool:
        g = task["dup_group"]
        capped = g is not None and (
            dup_week[g] >= plan.near_duplicates.per_week
            or dup_ever[g] >= plan.near_duplicates.overall
        )
        return task["status"] == "unlabeled" and task["id"] not in served and not capped

    for entry in queue.entries:
        task = by_id[entry.id]
        if entry.lane.startswith("quota:"):
            c = entry.lane.removeprefix("quota:")
            if not fits(task, c):
                alternatives = [
                    t["id"]
                    for t in tasks
                    if alive(t)
                    and t["id"] != entry.id
                    and np.float32(t["scores"][c]) >= plan.selection.min_score
                    and fits(t, c)
                ]
                assert not alternatives, f"rank {entry.rank}: {c} had {alternatives[:3]}"
                assert "no alternative left" in entry.reason
            total[c] += 1
            for key in keys:
                per[c][key, task["source"][key]] += 1
        served.add(entry.id)
        if task["dup_group"]:
            dup_week[task["dup_group"]] += 1
            dup_ever[task["dup_group"]] += 1


@PROPERTY
@given(
    seed=numpy_seeds,
    discovery=st.sampled_from([0.05, 0.1, 0.15, 0.2]),
    bicycle=st.sampled_from([0.05, 0.08, 0.1]),
    stop_sign=st.sampled_from([0.05, 0.1, 0.12]),
    control=st.sampled_from([0.0, 0.02, 0.05]),
)
def test_hard_negative_and_discovery_shares_hold_in_every_window_of_100(
    seed: int, discovery: float, bicycle: float, stop_sign: float, control: float
) -> None:
    tasks = records(900, seed, band_share=0.5, dup_share=0.0, labeled_share=0.02)
    plan = make_plan(
        discovery_reserve=discovery,
        control_share=control,
        easy_cap={"per_week": 1000},
        classes={
            "car": {"tier": "nice_to_have", "easy": True},
            "person": {"tier": "nice_to_have", "easy": True},
            "bicycle": {"tier": "must_not_miss", "hard_negative_share": bicycle},
            "stop_sign": {"tier": "must_not_miss", "hard_negative_share": stop_sign},
            "dog": {"tier": "experimental"},
        },
    )
    queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit=300)
    assert len(queue.entries) == 300
    lanes = [entry.lane for entry in queue.entries]
    shares = {
        "discovery": discovery,
        "hard_negative:bicycle": bicycle,
        "hard_negative:stop_sign": stop_sign,
    }
    for start in range(0, len(lanes) - 99):
        window = Counter(lanes[start : start + 100])
        for lane, share in shares.items():
            assert 0.8 * 100 * share <= window[lane] <= 1.2 * 100 * share, (lane, start, window)


@PROPERTY
@given(seed=numpy_seeds, n=st.integers(5, 200), limit=st.integers(1, 200))
def test_same_input_same_queue_in_any_line_order(seed: int, n: int, limit: int) -> None:
    tasks = records(n, seed)
    plan = make_plan()
    first = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit)
    again = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit)
    shuffled = tasks[:]
    random.Random(seed).shuffle(shuffled)
    reordered = plan_queue(snapshot_from_records(shuffled, plan), plan, NOW, limit)
    assert first.entries == again.entries
    assert [(e.id, e.lane) for e in first.entries] == [(e.id, e.lane) for e in reordered.entries]


@PROPERTY
@given(
    seed=numpy_seeds,
    n=st.integers(5, 200),
    pick=st.integers(0, 10_000),
    label=st.sampled_from(["Bicycle", "Car", "stop_sign", "dog", "unknown"]),
    hours_ago=st.integers(0, 24 * 14),
)
def test_recording_an_annotation_equals_planning_again(
    seed: int, n: int, pick: int, label: str, hours_ago: int
) -> None:
    tasks = records(n, seed)
    plan = make_plan()
    open_tasks = [t for t in tasks if t["status"] == "unlabeled"]
    if not open_tasks:
        return
    chosen = open_tasks[pick % len(open_tasks)]
    when = NOW - timedelta(hours=hours_ago)
    planner = Planner(snapshot_from_records(tasks, plan), plan, NOW)
    before = planner.head(60)
    planner.record_annotation(chosen["id"], [label], labeled_at=when, lead_time=42.0)
    after = planner.head(60)
    chosen.update(status="labeled", labels=[label], labeled_at=when.isoformat(), lead_time=42.0)
    fresh = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 60)
    assert after.entries == fresh.entries
    assert after.summary == fresh.summary
    assert chosen["id"] not in after.ids
    assert before.summary.week == after.summary.week
