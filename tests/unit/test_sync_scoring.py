"""The sync's scoring budget (``score_per_pass``) over a temporary store; no server needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labelplan.plan import parse_plan
from labelplan.store import ScoreRow, TaskRow, open_store
from labelplan.sync import PassReport, SyncService, SyncSettings

PLAN = parse_plan("seed: 4\nclasses: {car: {tier: nice_to_have, labels: [Car]}}")


class Recording:
    """A scorer that scores what it is given, except the tasks it cannot read."""

    def __init__(self, store: Any, unreadable: set[int]) -> None:
        self.store, self.unreadable, self.asked = store, unreadable, []

    def score(self, project: Any, tasks: list[TaskRow]) -> list[str]:
        self.asked.append([t.task_id for t in tasks])
        rows = [
            ScoreRow(t.task_id, "v", {"Car": 1.0})
            for t in tasks
            if t.task_id not in self.unreadable
        ]
        self.store.put_scores(1, rows)
        return []


def test_unreadable_tasks_go_last_so_the_budget_keeps_scoring_the_rest(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.sqlite3"))
    try:
        unreadable = set(range(1, 7))
        store.upsert_tasks(
            1,
            [
                TaskRow(
                    t,
                    {"image": f"{t}.png"},
                    problem="image unreadable" if t in unreadable else None,
                )
                for t in range(1, 21)
            ],
        )
        scorer = Recording(store, unreadable)
        service = SyncService(
            None,  # type: ignore[arg-type]  # scoring never talks to Label Studio
            store,
            PLAN,
            SyncSettings(1, score_per_pass=5),
            scorer=scorer,
        )
        waiting = []
        for _ in range(4):
            report = PassReport()
            service.score(None, report)  # type: ignore[arg-type]
            waiting.append(report.awaiting_scores)
        # 14 readable tasks, 5 a pass: all scored in three passes, the unreadable ones last
        assert [set(batch) & unreadable for batch in scorer.asked[:2]] == [set(), set()]
        assert {s.task_id for s in store.scores(1)} == set(range(7, 21))
        assert waiting[:3] == [15, 10, 5]
    finally:
        store.close()
