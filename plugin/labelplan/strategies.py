"""Labeling strategies for the simulation: which open task the annotator gets next.

Each strategy is a small class behind one interface (in the manner of small-text's query
strategies): :meth:`Strategy.select` gets what a strategy may see of the project (:class:`View`:
task data, the model's current probabilities, what has been labeled) and returns the next tasks
in the order Label Studio would serve them. The simulation loop never changes when one is added.

Label Studio's three built-ins are reproduced from ``projects/functions/next_task.py`` (1.23.2),
for one annotator (so no task locks and no "random among annotators" branch):

* **Sequential sampling** serves the open task with the lowest id.
* **Uniform sampling** serves a uniformly random open task (``order_by('?')``).
* **Uncertainty sampling** serves the open task whose prediction of the project's model version
  has the lowest ``score`` (the ``cluster`` term is unused: our backend leaves it empty). The
  score is what the labelplan backend sends, the top class probability rounded to 6 digits;
  ties, which the database returns in no promised order, go to the lower id.

**labelplan** is the sync service's pass: every task becomes a planner record through
:func:`labelplan.sync.task_record`, and :func:`labelplan.schedule.plan_queue` plans the head that
Label Studio then serves in order until the next pass. When the head runs dry Label Studio falls
back to random open tasks, and so does this strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.plan import Plan

FALLBACK_LANE = "fallback:random"


@dataclass
class View:
    """What a strategy may see: the project's tasks, the model, and labels given so far.

    Rows index every array; ``labels`` holds true classes only for labeled rows (the oracle
    answered those), so a strategy cannot peek.
    """

    ids: npt.NDArray[np.int64]
    data: list[dict[str, Any]]
    classes: tuple[str, ...]
    """Label Studio label values, the columns of ``probs``."""
    probs: npt.NDArray[np.float64]
    model_version: str
    dup_groups: list[str | None]
    open: npt.NDArray[np.bool_]
    labels: dict[int, str] = field(default_factory=dict)
    labeled_at: dict[int, datetime] = field(default_factory=dict)
    lanes: dict[int, str] = field(default_factory=dict)
    now: datetime | None = None

    def open_rows(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.open)


@dataclass(frozen=True)
class Pick:
    """One task to serve, and the queue lane that chose it (labelplan only)."""

    row: int
    lane: str | None = None


class Strategy(ABC):
    """Chooses the next tasks to serve. ``uses_model``: the loop keeps ``View.probs`` current."""

    name: str
    uses_model: bool = False

    @abstractmethod
    def select(self, view: View, n: int) -> list[Pick]:
        """The next ``n`` open tasks in serving order (fewer only when fewer are open)."""


class Sequential(Strategy):
    """Label Studio's "Sequential sampling": open tasks in id order."""

    name = "sequential"

    def select(self, view: View, n: int) -> list[Pick]:
        rows = view.open_rows()
        order = rows[np.argsort(view.ids[rows], kind="stable")]
        return [Pick(int(r)) for r in order[:n]]


class Uniform(Strategy):
    """Label Studio's "Uniform sampling": a uniformly random open task each time."""

    name = "uniform"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def select(self, view: View, n: int) -> list[Pick]:
        rows = view.open_rows()
        chosen = self.rng.choice(rows, size=min(n, len(rows)), replace=False)
        return [Pick(int(r)) for r in chosen]


class Uncertainty(Strategy):
    """Label Studio's "Uncertainty sampling" on the backend's score: least confident first."""

    name = "uncertainty"
    uses_model = True

    def select(self, view: View, n: int) -> list[Pick]:
        rows = view.open_rows()
        score = np.round(view.probs[rows].max(axis=1), 6)
        order = rows[np.lexsort((view.ids[rows], score))]
        return [Pick(int(r)) for r in order[:n]]


class Labelplan(Strategy):
    """The planner, fed the way the sync service feeds it, served the way Label Studio serves."""

    name = "labelplan"
    uses_model = True

    def __init__(self, plan: Plan, head_size: int, seed: int) -> None:
        self.plan = plan
        self.head_size = head_size
        self.rng = np.random.default_rng(seed)
        self._tasks: list[Any] | None = None

    def select(self, view: View, n: int) -> list[Pick]:
        from labelplan.schedule import plan_queue
        from labelplan.snapshot import snapshot_from_records
        from labelplan.store import AnnotationRow, ScoreRow, TaskRow
        from labelplan.sync import task_record

        if view.now is None:
            raise ValueError("the labelplan strategy needs View.now (the simulated clock)")
        if self._tasks is None:
            self._tasks = [
                TaskRow(int(task_id), data)
                for task_id, data in zip(view.ids, view.data, strict=True)
            ]
        records = []
        for row, task in enumerate(self._tasks):
            probs = dict(zip(view.classes, view.probs[row].tolist(), strict=True))
            score = ScoreRow(task.task_id, view.model_version, probs, view.dup_groups[row])
            annotations = []
            if row in view.labels:
                at = view.labeled_at[row]
                annotations = [
                    AnnotationRow(
                        task.task_id, task.task_id, 1, (view.labels[row],), None, False, at
                    )
                ]
            records.append(task_record(task, annotations, score, self.plan, view.lanes.get(row)))
        snapshot = snapshot_from_records(records, self.plan)
        queue = plan_queue(snapshot, self.plan, view.now, max(self.head_size, n))
        row_of = {int(task_id): row for row, task_id in enumerate(view.ids)}
        picks = [Pick(row_of[e.id], e.lane) for e in queue.entries[:n]]
        if len(picks) < n:
            taken = {p.row for p in picks}
            rest = np.array([r for r in view.open_rows() if int(r) not in taken], dtype=np.int64)
            extra = self.rng.choice(rest, size=min(n - len(picks), len(rest)), replace=False)
            picks.extend(Pick(int(r), FALLBACK_LANE) for r in extra)
        return picks


STRATEGY_NAMES = ("labelplan", "sequential", "uniform", "uncertainty")


def make_strategy(name: str, plan: Plan, *, seed: int, head_size: int) -> Strategy:
    """A strategy by name (one of :data:`STRATEGY_NAMES`)."""
    if name == "labelplan":
        return Labelplan(plan, head_size, seed)
    if name == "sequential":
        return Sequential()
    if name == "uniform":
        return Uniform(seed)
    if name == "uncertainty":
        return Uncertainty()
    raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGY_NAMES)}")
