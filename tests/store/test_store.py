"""The store holds what processes must agree on; replays never duplicate; both engines behave alike."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from labelplan.store import (
    MIGRATIONS,
    AnnotationRow,
    FeatureRow,
    ModelRecord,
    QueueRow,
    ScoreRow,
    Store,
    StoreError,
    TaskRow,
    open_store,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_tasks_upsert_replaces_and_never_duplicates(store: Store) -> None:
    store.upsert_tasks(1, [TaskRow(10, {"text": "a"}, T0, T0), TaskRow(11, {"text": "b"})])
    store.upsert_tasks(1, [TaskRow(10, {"text": "a2"}, T0, T0, is_labeled=True, overlap=2)])
    store.upsert_tasks(2, [TaskRow(10, {"text": "other project"})])
    tasks = store.tasks(1)
    assert [t.task_id for t in tasks] == [10, 11]
    assert tasks[0] == TaskRow(10, {"text": "a2"}, T0, T0, is_labeled=True, overlap=2)
    assert store.tasks(2)[0].data == {"text": "other project"}


def test_a_task_problem_is_kept_for_the_report(store: Store) -> None:
    store.upsert_tasks(1, [TaskRow(5, {}, problem="data key 'text' missing")])
    assert store.tasks(1)[0].problem == "data key 'text' missing"


def test_replaying_annotations_is_idempotent_and_replacing_drops_deleted_ones(store: Store) -> None:
    first = AnnotationRow(100, 10, 7, ("cat",), 4.5, False, T0)
    second = AnnotationRow(101, 10, 8, ("dog",), None, False, T0)
    skip = AnnotationRow(102, 11, 7, (), 1.0, True, T0)
    store.upsert_annotations(1, [first, second, skip])
    store.upsert_annotations(1, [first, second, skip])
    assert store.annotations(1) == [first, second, skip]
    store.replace_task_annotations(1, 10, [second])
    assert store.annotations(1) == [second, skip]


def test_features_round_trip_in_the_requested_order(store: Store) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    store.put_features(
        1, "minilm", [FeatureRow(t, v, f"h{t}") for t, v in zip([5, 6, 7], vectors, strict=True)]
    )
    got = store.features(1, "minilm", [7, 5, 99])
    assert got.task_ids.tolist() == [7, 5]
    np.testing.assert_array_equal(got.matrix, vectors[[2, 0]])
    assert got.dup_keys == ["h7", "h5"]
    assert store.features(1, "other").matrix.shape == (0, 0)


def test_scores_models_and_queue_rows_round_trip(store: Store) -> None:
    store.put_scores(
        1, [ScoreRow(5, "m1", {"cat": 0.9, "dog": 0.1}, "g1", [{"value": {"choices": ["cat"]}}])]
    )
    store.put_scores(1, [ScoreRow(5, "m2", {"cat": 0.2, "dog": 0.8})])
    assert store.scores(1) == [ScoreRow(5, "m2", {"cat": 0.2, "dog": 0.8})]
    assert store.latest_model(1) is None
    store.put_model(1, ModelRecord("v1", b"\x00\x01", {"n": 1}, T0))
    store.put_model(1, ModelRecord("v2", b"\x02", {"n": 2}, datetime(2026, 12, 1, tzinfo=UTC)))
    latest = store.latest_model(1)
    assert latest is not None and (latest.version, latest.blob, latest.meta) == (
        "v2",
        b"\x02",
        {"n": 2},
    )
    row = QueueRow(5, 900, "labelplan-queue", 0.25, "quota:cat", "quota: cat is 1 of 5")
    store.put_queue(1, [row, row])
    assert store.queue(1) == {5: row}
    store.remove_queue(1, [5])
    assert store.queue(1) == {}


def test_deleting_a_task_removes_everything_about_it(store: Store) -> None:
    store.upsert_tasks(1, [TaskRow(5, {})])
    store.upsert_annotations(1, [AnnotationRow(1, 5, 1, ("cat",), 1.0, False, T0)])
    store.put_scores(1, [ScoreRow(5, "m", {"cat": 1.0})])
    store.put_features(1, "x", [FeatureRow(5, np.ones(2))])
    store.put_queue(1, [QueueRow(5, 1, "q", 0.5, "control", "random")])
    store.delete_tasks(1, [5])
    assert (store.tasks(1), store.annotations(1), store.scores(1), store.queue(1)) == (
        [],
        [],
        [],
        {},
    )
    assert store.features(1, "x").task_ids.size == 0


def test_cursors_and_audit_log(store: Store) -> None:
    assert store.cursor(1, "updated_at") is None
    store.set_cursor(1, "updated_at", "2026-12-01T00:00:00+00:00")
    store.set_cursor(1, "updated_at", "2026-12-02T00:00:00+00:00")
    assert store.cursor(1, "updated_at") == "2026-12-02T00:00:00+00:00"
    store.audit(1, "pass", {"written": 3, "calls": 2})
    store.audit(1, "pass", {"written": 0, "calls": 1})
    log = store.audit_log(1)
    assert [e.details["written"] for e in log] == [0, 3]  # newest first


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_tasks(1, [TaskRow(1, {})])
        raise RuntimeError("crash mid-write")
    assert store.tasks(1) == []


def test_reopening_keeps_data_and_does_not_migrate_twice(store_url: str) -> None:
    first = open_store(store_url)
    first.upsert_tasks(3, [TaskRow(1, {"x": 1})])
    first.close()
    again = open_store(store_url)
    assert again.tasks(3)[0].data == {"x": 1}
    assert again.execute("SELECT version FROM schema_version") == [(len(MIGRATIONS),)]
    again.close()


def test_threads_share_a_store_safely(store: Store) -> None:
    def write(start: int) -> None:
        store.upsert_tasks(1, [TaskRow(i, {"i": i}) for i in range(start, start + 50)])

    threads = [threading.Thread(target=write, args=(n * 50,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.tasks(1)) == 200


def _hold_lock(
    url: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event
) -> None:
    other = open_store(url)
    with other.leader_lock(9) as got:
        assert got
        ready.set()
        release.wait(20)


def test_only_one_process_leads_a_project(store_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(store_url, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        store = open_store(store_url)
        with store.leader_lock(9) as got:
            assert got is False
        with store.leader_lock(10) as got:
            assert got is True  # another project is free
    finally:
        release.set()
        holder.join(30)
    with store.leader_lock(9) as got:
        assert got is True  # released when the leader let go
    store.close()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nope" / "x.sqlite3"))


def test_password_never_shows_in_repr() -> None:
    store = Store.__new__(Store)
    store.url, store.dialect = "postgresql://u:secretpw@db:5432/lp", "postgresql"
    assert "secretpw" not in repr(store)
