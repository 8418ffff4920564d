"""The store's review section: sampling decisions, judged lots, escalations, Enterprise reviews
and review assignments (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from labelplan.store import (
    MIGRATIONS,
    EscalationRow,
    LotRow,
    ReviewRow,
    SampleRow,
    Store,
    open_store,
)

AT = datetime(2024, 5, 6, 9, tzinfo=UTC)


def test_a_task_is_decided_once_and_a_repeat_keeps_the_first_decision(store: Store) -> None:
    first = SampleRow(
        11, 3, "must_not_miss", "2024-05-06", 1, 1.0, True, "small lot", "tightened", AT
    )
    store.put_samples(1, [first])
    store.put_samples(
        1, [SampleRow(11, 3, "must_not_miss", "2024-05-06", 1, 0.3, False, "x", "normal", AT)]
    )
    assert store.samples(1) == {11: first}
    assert store.samples(2) == {}


def test_a_lot_is_judged_once_and_lots_come_back_oldest_week_first(store: Store) -> None:
    late = LotRow(3, "nice_to_have", "2024-05-13", 20, 5, 0, 0, True, "normal", AT)
    early = LotRow(3, "nice_to_have", "2024-05-06", 12, 4, 2, 0, False, "normal", AT)
    store.put_lots(1, [late, early])
    store.put_lots(1, [LotRow(3, "nice_to_have", "2024-05-06", 12, 4, 0, 0, True, "normal", AT)])
    assert store.lots(1) == [early, late]


def test_an_escalation_keeps_its_opening_and_takes_the_new_status(store: Store) -> None:
    opened = EscalationRow(
        5, "annotators disagree on a rare class (agreement 50%)", AT, "escalated"
    )
    store.put_escalations(1, [opened])
    settled_at = datetime(2024, 5, 7, 10, tzinfo=UTC)
    store.put_escalations(
        1, [EscalationRow(5, "other reason", settled_at, "settled_by_expert", settled_at, ("car",))]
    )
    row = store.escalations(1)[5]
    assert row.reason == opened.reason and row.opened_at == AT
    assert (row.status, row.settled_at, row.answer) == ("settled_by_expert", settled_at, ("car",))


def test_reviews_are_replaced_whole_each_time(store: Store) -> None:
    accepted = ReviewRow(7, 70, 5, 4, True, None, AT)
    corrected = ReviewRow(8, 71, 6, 4, False, ("Car",), AT)
    store.replace_reviews(1, [accepted, corrected])
    assert store.reviews(1) == [accepted, corrected]
    edited = ReviewRow(8, 71, 6, 4, True, None, AT)
    store.replace_reviews(1, [edited])  # review 7 deleted in Label Studio, 8 changed there
    assert store.reviews(1) == [edited]
    assert store.reviews(2) == []


def test_a_review_listed_twice_is_stored_once(store: Store) -> None:
    first = ReviewRow(7, 70, 5, 4, False, None, AT)
    again = ReviewRow(7, 70, 5, 4, True, None, AT)
    store.replace_reviews(1, [first, again])
    assert store.reviews(1) == [again]


def test_a_task_is_assigned_for_review_once(store: Store) -> None:
    store.put_assignments(1, [5, 6], [9, 4], AT)
    store.put_assignments(1, [6, 7], [2], AT)
    assert store.assignments(1) == {5: (4, 9), 6: (4, 9), 7: (2,)}
    store.delete_assignments(1, [6])
    assert store.assignments(1) == {5: (4, 9), 7: (2,)}


def test_the_review_tables_arrive_as_migrations_three_and_four(store_url: str) -> None:
    opened = open_store(store_url)
    try:
        assert len(MIGRATIONS) == 4
        assert opened.execute("SELECT version FROM schema_version")[0][0] == 4
        assert opened.migrate() == 4  # idempotent
        assert opened.execute("SELECT count(*) FROM reviews")[0][0] == 0
        assert opened.execute("SELECT count(*) FROM review_assignments")[0][0] == 0
    finally:
        opened.close()
