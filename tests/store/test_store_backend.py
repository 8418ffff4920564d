"""The store's backend section: look-alikes, task problems, duplicate groups, versions, the lock."""

from __future__ import annotations

from labelplan.store import LookalikeRow, ModelRecord, ScoreRow, Store, TaskRow


def test_lookalikes_are_replaced_whole_and_read_most_similar_first(store: Store) -> None:
    store.put_lookalikes(
        1, [LookalikeRow(5, "rare", 0.4, 9, "v.1"), LookalikeRow(6, "rare", 0.9, 9, "v.1")]
    )
    store.put_lookalikes(
        1, [LookalikeRow(7, "rare", 0.5, 8, "v.2"), LookalikeRow(6, "rare", 0.8, 8, "v.2")]
    )
    rows = store.lookalikes(1, "rare")
    assert [(r.task_id, r.anchor_task_id, r.model_version) for r in rows] == [
        (6, 8, "v.2"),
        (7, 8, "v.2"),
    ]
    assert store.lookalikes(2) == []


def test_task_problems_touch_only_the_problem_column(store: Store) -> None:
    store.upsert_tasks(1, [TaskRow(4, {"text": "a"}, is_labeled=True, overlap=2)])
    store.set_task_problems(1, {4: "unreadable image", 5: "no data key 'text'"}, {5: {"x": 1}})
    tasks = {t.task_id: t for t in store.tasks(1)}
    assert (tasks[4].problem, tasks[4].is_labeled, tasks[4].overlap, tasks[4].data) == (
        "unreadable image",
        True,
        2,
        {"text": "a"},
    )
    assert tasks[5].problem == "no data key 'text'" and tasks[5].data == {"x": 1}
    store.set_task_problems(1, {4: None}, {})
    assert {t.task_id: t.problem for t in store.tasks(1)}[4] is None


def test_dup_groups_reads_the_groups_stored_with_scores(store: Store) -> None:
    store.put_scores(1, [ScoreRow(3, "v", {"a": 1.0}, "dup:3"), ScoreRow(4, "v", {"a": 1.0}, None)])
    assert store.dup_groups(1, [3, 4, 99]) == {3: "dup:3", 4: None}


def test_model_versions_are_listed_oldest_first(store: Store) -> None:
    for version in ("b.0", "b.1", "b.2"):
        store.put_model(1, ModelRecord(version, b"x", {}))
    assert store.model_versions(1) == ["b.0", "b.1", "b.2"]


def test_one_trainer_per_project_and_it_does_not_block_the_sync_leader(store: Store) -> None:
    with store.training_lock(1) as got:
        assert got
        with store.leader_lock(1) as leader:
            assert leader
