"""The store's review section: sampling decisions, judged lots and escalations (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from labelplan.store import MIGRATIONS, EscalationRow, LotRow, SampleRow, Store, open_store

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


def test_the_review_tables_arrive_as_migration_three(store_url: str) -> None:
    opened = open_store(store_url)
    try:
        assert len(MIGRATIONS) == 3
        assert opened.execute("SELECT version FROM schema_version")[0][0] == 3
        assert opened.migrate() == 3  # idempotent
    finally:
        opened.close()
