"""Re-planning after a few labels continues the week instead of starting every lane afresh.

The sync re-plans after every few annotations and only the first entries of each plan get
served. If each plan restarted its share schedule at position 0, lanes dealt later in the head
(hard negatives, discovery) would never be reached: annotators would see only the head's first
positions, over and over.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from labelplan.schedule import Planner, plan_queue
from labelplan.snapshot import snapshot_from_records

from .synthetic import NOW, make_plan, records


def serve_in_batches(seed: int, batch: int, batches: int) -> list[str]:
    """Plan, serve the first ``batch`` entries (labeled as their likeliest class), re-plan, ..."""
    plan = make_plan(
        discovery_reserve=0.1,
        easy_cap={"per_week": 1000},
        classes={
            "car": {"tier": "nice_to_have", "easy": True},
            "person": {"tier": "nice_to_have", "easy": True},
            "bicycle": {"tier": "must_not_miss", "hard_negative_share": 0.1},
            "stop_sign": {"tier": "must_not_miss"},
            "dog": {"tier": "experimental"},
        },
    )
    tasks = records(1500, seed, band_share=0.4, dup_share=0.0, labeled_share=0.0)
    by_id = {t["id"]: t for t in tasks}
    served: list[str] = []
    for step in range(batches):
        queue = plan_queue(snapshot_from_records(tasks, plan), plan, NOW, limit=100)
        for entry in queue.entries[:batch]:
            task = by_id[entry.id]
            likeliest = max(task["scores"], key=task["scores"].get)
            task.update(
                status="labeled",
                labels=[likeliest],
                labeled_at=(NOW - timedelta(minutes=batches - step)).isoformat(),
                lead_time=10.0,
                lane=entry.lane,
            )
            served.append(entry.lane)
    return served


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.sampled_from([3, 5, 10]))
def test_reserved_lanes_keep_their_share_when_only_the_front_is_ever_served(
    seed: int, batch: int
) -> None:
    served = serve_in_batches(seed, batch, batches=200 // batch)
    counts = Counter(served)
    for lane, share in {"hard_negative:bicycle": 0.1, "discovery": 0.1}.items():
        assert 0.8 * share * len(served) <= counts[lane] <= 1.2 * share * len(served), (
            lane,
            counts,
        )


def test_a_plan_continues_where_the_last_one_was_served() -> None:
    """After the first 10 entries are served as planned, the next head starts with entries 11..."""
    plan = make_plan(discovery_reserve=0.1, control_share=0.05)
    tasks = records(800, 5, band_share=0.3, dup_share=0.0, labeled_share=0.0)
    planner = Planner(snapshot_from_records(tasks, plan), plan, NOW)
    first = planner.head(60)
    by_id = {t["id"]: t for t in tasks}
    for entry in first.entries[:10]:
        scores = by_id[entry.id]["scores"]
        planner.record_annotation(
            entry.id, [max(scores, key=scores.get)], NOW, 10.0, lane=entry.lane
        )
    second = planner.head(50)
    old = {e.id for e in first.entries[10:30]}
    new = {e.id for e in second.entries[:20]}
    assert len(old & new) >= 16, (sorted(old), sorted(new))
    # the reserved lanes resume their schedule rather than restarting at position 0
    assert Counter(e.lane for e in second.entries[:20])["control"] <= 1


def test_a_met_quota_lane_yields_to_the_others() -> None:
    plan = make_plan(easy_cap={"per_week": 1000})
    tasks = records(1500, 9, dup_share=0.0, labeled_share=0.0)
    before = Counter(
        e.lane for e in plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 60).entries
    )
    bikes = [t for t in tasks if t["scores"]["bicycle"] > 0.5][:8]
    for task in bikes:
        task.update(
            status="labeled", labels=["bicycle"], labeled_at=NOW.isoformat(), lead_time=30.0
        )
    after = Counter(
        e.lane for e in plan_queue(snapshot_from_records(tasks, plan), plan, NOW, 60).entries
    )
    assert after["quota:bicycle"] < before["quota:bicycle"]
