"""The planner: mix the lanes into one queue where every entry says why it is there.

``plan_queue(snapshot, plan, now, limit)`` is the functional core; :class:`Planner` is the same
computation kept as state, so that one new annotation updates counters in O(labels x source keys)
and the next :meth:`Planner.head` reuses every lane's ranking that the annotation did not change.

How the queue is mixed (details and the reasons in ``docs/planner.md`` and decision 0010):

1. **Reserved shares, in entries.** Hard-negative, discovery and control lanes each own a share
   ``s`` of queue entries; the time-shared lanes together own ``1 - sum(s)``. Positions are dealt
   by earliest deadline first over the ideal positions ``j / s`` (a Pfair schedule), so after
   any number of entries each lane is less than one entry away from its share, and every window of
   100 entries holds ``100 s`` entries give or take one.
2. **Deficit lanes, in time.** Quota lanes and the easy lane share the rest like deficit round
   robin in its smooth, virtual-time form (start-time fair queuing): a lane's claim on annotator
   time is its weight times the items it is still behind (at least one), and each entry costs the
   lane's median labeling time. A lane whose items take three times longer gets a third of the
   entries for the same claim.
3. **Simulated week.** As entries are dealt, the board adds each entry's class probabilities to
   the expected counts (an entry with p(bicycle) = 0.8 brings 0.8 of a bicycle), so quotas fill,
   deficits shrink and the easy lane opens in the queue as they would while it is labeled. Caps
   that must hold for sure (near-duplicate groups, the easy cap, source shares) count whole
   entries.

Within a lane, candidates come in the lane's priority order, computed for the head only
(``argpartition`` of a chunk, never a full sort), skipping tasks already served, tasks whose
near-duplicate group is full, and, while an alternative exists among the next
:data:`SCAN_WINDOW` candidates, tasks that would push a source value over its share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.lanes import (
    Board,
    DeficitLane,
    Lane,
    LaneContext,
    Priorities,
    Rows,
    lanes_for,
)
from labelplan.ledger import Ledger, WeekWindow, week_of
from labelplan.plan import Plan
from labelplan.snapshot import Snapshot

#: How many still-possible candidates a lane looks past for one that keeps source shares; if none
#: of them does, the lane takes its best candidate and says so in the reason.
SCAN_WINDOW = 512

#: Candidates sorted per extension of a lane's ranking; bounded so a lane that serves few entries
#: sorts few candidates.
MIN_CHUNK = 1024

#: The pseudo-lane that stands for all deficit lanes in the reserved-share schedule.
TIME_SHARED = "time-shared"


class PlannerError(ValueError):
    """The planner was asked something it cannot answer (unknown task, task labeled twice)."""


@dataclass(frozen=True)
class QueueEntry:
    """One place in the queue: which task, from which lane, and why."""

    rank: int
    id: int
    lane: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "lane": self.lane, "reason": self.reason}


@dataclass(frozen=True)
class QuotaStatus:
    """Where one class stands this week, and what the queue head is expected to add."""

    name: str
    tier: str
    quota: int
    labeled: int
    expected_in_head: float
    met_at_rank: int | None
    candidates: int
    expected_available: float
    lead_time: float
    shortage: str | None

    @property
    def expected_total(self) -> float:
        return self.labeled + self.expected_in_head


@dataclass(frozen=True)
class LaneStatus:
    """How many entries a lane got and whether it ran out of candidates."""

    name: str
    entries: int
    exhausted_at: int | None


@dataclass(frozen=True)
class Summary:
    """The queue head's account: quota status per class, shortages, lanes, the week."""

    week: WeekWindow
    requested: int
    length: int
    classes: list[QuotaStatus]
    lanes: list[LaneStatus]
    easy_count: int
    easy_cap: int
    ended_because: str | None

    @property
    def shortages(self) -> list[QuotaStatus]:
        return [status for status in self.classes if status.shortage]


@dataclass(frozen=True)
class Queue:
    """The head of the queue and its summary."""

    entries: list[QueueEntry]
    summary: Summary

    @property
    def ids(self) -> list[int]:
        return [entry.id for entry in self.entries]


class Ranking:
    """A lane's candidates in priority order, sorted a chunk at a time as the queue needs them.

    Ties in priority are broken by task id, so the order depends on the tasks, not on their order
    in the snapshot. Rankings are kept between :meth:`Planner.head` calls; tasks labeled since are
    skipped when walked.
    """

    def __init__(self, rows: Rows, priority: Priorities, ids: npt.NDArray[np.int64]) -> None:
        self._rows = rows
        self._negative = -priority
        self._ids = ids
        self.order: Rows = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.order) + int(self._rows.shape[0])

    @property
    def exhausted(self) -> bool:
        """Whether every candidate is already in ``order``."""
        return self._rows.shape[0] == 0

    def extend(self, at_least: int) -> bool:
        """Sort the next ``at_least`` or more best candidates onto ``order``; False if none left."""
        m = int(self._rows.shape[0])
        if m == 0:
            return False
        size = min(m, max(at_least, MIN_CHUNK))
        if size < m:
            chosen = self._top(size)
            rest = np.ones(m, dtype=bool)
            rest[chosen] = False
        else:
            chosen = np.arange(m)
            rest = np.zeros(m, dtype=bool)
        rows, negative = self._rows[chosen], self._negative[chosen]
        by_priority = np.lexsort((self._ids[rows], negative))
        self.order = np.concatenate([self.order, rows[by_priority]])
        self._rows, self._negative = self._rows[rest], self._negative[rest]
        return True

    def _top(self, size: int) -> npt.NDArray[np.intp]:
        """Indices of the ``size`` best candidates, ties at the cut broken by the smaller id."""
        negative = self._negative
        cut = negative[np.argpartition(negative, size - 1)[size - 1]]
        better = np.flatnonzero(negative < cut)
        tied = np.flatnonzero(negative == cut)
        need = size - better.shape[0]
        tied = tied[np.argsort(self._ids[self._rows[tied]], kind="stable")[:need]]
        return np.concatenate([better, tied])


class _Walk:
    """One lane's position in its ranking while one queue head is built."""

    def __init__(self, lane: Lane, ranking: Ranking, chunk: int) -> None:
        self.lane = lane
        self.ranking = ranking
        self.chunk = chunk
        self.start = 0
        self.entries = 0
        self.exhausted_at: int | None = None

    def take(self, board: Board) -> tuple[int, bool] | None:
        """The lane's next task and whether a source share was relaxed for it; None when dry.

        Looks at growing windows of the ranking (16, 64, 256, ... candidates), vectorized,
        until it finds an admissible task or has seen :data:`SCAN_WINDOW` alive ones.
        """
        order = self.ranking.order
        while self.start < len(order) and not board.alive_one(int(order[self.start])):
            self.start += 1
        if self.start < len(order):
            row = int(order[self.start])
            if self.lane.admits_one(row, board):
                return row, False
        index, width, seen = self.start, 16, 0
        first_alive: int | None = None
        while seen < SCAN_WINDOW:
            if index + width > len(self.ranking.order) and not self.ranking.exhausted:
                self.ranking.extend(max(self.chunk, width))
            window = self.ranking.order[index : index + width]
            if window.shape[0] == 0:
                break
            alive = board.alive(window)
            if index == self.start and not alive.any():
                self.start += window.shape[0]
            elif index == self.start:
                self.start += int(np.argmax(alive))
            candidates = window[alive][: SCAN_WINDOW - seen]
            if candidates.shape[0]:
                if first_alive is None:
                    first_alive = int(candidates[0])
                admitted = np.flatnonzero(self.lane.admits(candidates, board))
                if admitted.shape[0]:
                    return int(candidates[admitted[0]]), False
                seen += candidates.shape[0]
            index += window.shape[0]
            width *= 4
        if first_alive is None:
            return None
        return first_alive, True


class _Deal:
    """Deals queue positions to reserved lanes and the time-shared pseudo-lane by their shares.

    Earliest deadline first over ideal positions: the ``j``-th entry of a lane with share ``s``
    is due by position ``j / s`` and may not come before ``(j - 1) / s``. With shares summing to
    one this keeps every lane within one entry of its share at every prefix (Baruah et al.'s
    proportionate fairness, on one processor). When a lane runs dry its share is spread over the
    others and the accounting restarts.
    """

    def __init__(self, shares: dict[str, float], served: Mapping[str, int] | None = None) -> None:
        self.order = list(shares)
        self.shares: dict[str, float] = {}
        self.counts: dict[str, float] = {}
        self.base = 0
        self._reset(shares, 0)
        if served:
            self._resume(served)

    def _resume(self, served: Mapping[str, int]) -> None:
        """Continue this week's deal: positions already served count, so a re-plan after a few
        labels goes on where the last plan was instead of starting every lane afresh.

        A lane that fell behind (it had no candidates for a while) restarts at most one entry
        behind its share, so it does not burst to catch up.
        """
        total = sum(served.get(name, 0) for name in self.shares)
        if total <= 0:
            return
        self.base = -total
        for name, share in self.shares.items():
            self.counts[name] = max(float(served.get(name, 0)), share * total - 1.0)

    def _reset(self, shares: dict[str, float], position: int) -> None:
        total = sum(shares.values())
        self.shares = {name: share / total for name, share in shares.items() if share > 0}
        self.counts = dict.fromkeys(self.shares, 0.0)
        self.base = position

    def choose(self, position: int, available: set[str]) -> str | None:
        """The lane to serve at ``position`` among those that can serve now."""
        elapsed = position - self.base + 1
        best: tuple[float, int, str] | None = None
        fallback: tuple[float, int, str] | None = None
        for index, name in enumerate(self.order):
            share = self.shares.get(name)
            if share is None or name not in available:
                continue
            count = self.counts[name]
            key = (count + 1) / share, index, name
            if count < share * elapsed + 1e-9 and (best is None or key < best):
                best = key
            if fallback is None or key < fallback:
                fallback = key
        chosen = best or fallback
        return chosen[2] if chosen else None

    def served(self, name: str) -> None:
        self.counts[name] += 1

    def drop(self, name: str, position: int) -> None:
        """A lane ran dry: share its part among the rest from ``position`` on."""
        rest = {n: s for n, s in self.shares.items() if n != name}
        if rest:
            self._reset(rest, position)
        else:
            self.shares, self.counts = {}, {}


class Planner:
    """The planner as state: rankings, ledger and open tasks, updated one annotation at a time.

    ``Planner(snapshot, plan, now).head(k)`` equals ``plan_queue(snapshot, plan, now, k)``; after
    :meth:`record_annotation` it equals planning again from a snapshot where that task is labeled.
    """

    def __init__(self, snapshot: Snapshot, plan: Plan, now: datetime) -> None:
        self.snapshot = snapshot
        snapshot.index()  # so that record_annotation finds a task in O(log n)
        self.plan = plan
        self.week = week_of(now, plan)
        self.ledger = Ledger(snapshot, plan, self.week)
        self.open = ~snapshot.labeled
        self.context = LaneContext(snapshot, plan, self.ledger, self.open)
        self.reserved, self.deficit = lanes_for(plan, snapshot)
        self._rankings: dict[str, Ranking] = {}
        self._lanes: dict[str, Lane] = {lane.name: lane for lane in [*self.reserved, *self.deficit]}
        self._label_map = plan.label_map()

    def record_annotation(
        self,
        task_id: int,
        labels: list[str],
        labeled_at: datetime | None = None,
        lead_time: float | None = None,
        lane: str | None = None,
    ) -> None:
        """Count one new annotation: the task leaves the queue and the ledger moves on.

        ``lane`` is the queue lane that served the task, if the queue did: the next head
        continues each lane's share of the week from there.

        ``labels`` are class names or Label Studio label values (unknown ones are ignored). Only
        rankings that depend on the annotation (a source value seen for the first time for a
        class) are recomputed, lazily, at the next :meth:`head`.
        """
        try:
            row = self.snapshot.row(task_id)
        except KeyError:
            raise PlannerError(
                f"task {task_id} is not in the snapshot; plan from a fresh snapshot to add tasks"
            ) from None
        if not self.open[row]:
            raise PlannerError(
                f"task {task_id} is already labeled; re-annotations are counted from a new snapshot"
            )
        classes = tuple(
            sorted(
                {
                    self.snapshot.classes.index(self._label_map[v])
                    for v in labels
                    if v in self._label_map
                }
            )
        )
        when = float("nan") if labeled_at is None else labeled_at.timestamp()
        seconds = float("nan") if lead_time is None else float(lead_time)
        self.open[row] = False
        if lane:
            self.snapshot.served_by[row] = lane
        if self.ledger.record(row, classes, when, seconds):
            for name, lane in self._lanes.items():
                if lane.uses_seen:
                    self._rankings.pop(name, None)

    def week_lanes(self) -> dict[str, int]:
        """How many of this week's labeled tasks each queue lane served (tasks the queue did not
        serve, e.g. labeled before labelplan was enabled, are not counted)."""
        counts: dict[str, int] = {}
        at = self.snapshot.labeled_at
        for row, lane in self.snapshot.served_by.items():
            if self.week.contains(float(at[row])):
                counts[lane] = counts.get(lane, 0) + 1
        return counts

    def ranking(self, lane: Lane) -> Ranking:
        """A lane's ranking, computed once and kept until an annotation changes it."""
        found = self._rankings.get(lane.name)
        if found is None:
            rows, priority = lane.rank(self.context)
            found = Ranking(rows, priority, self.snapshot.ids)
            self._rankings[lane.name] = found
        return found

    def head(self, limit: int) -> Queue:
        """The first ``limit`` entries of the queue, with the summary."""
        if limit < 0:
            raise PlannerError(f"limit must be >= 0; got {limit}")
        board = Board(self.context)
        chunk = max(MIN_CHUNK, limit // 4)
        walks = {
            lane.name: _Walk(lane, self.ranking(lane), chunk)
            for lane in [*self.reserved, *self.deficit]
        }
        shares = {lane.name: lane.share for lane in self.reserved}
        shares[TIME_SHARED] = 1.0 - sum(shares.values())
        served = self.week_lanes()
        deal_served = {name: served.get(name, 0) for name in shares if name != TIME_SHARED}
        deal_served[TIME_SHARED] = sum(served.get(lane.name, 0) for lane in self.deficit)
        deal = _Deal(shares, deal_served)
        clock = _FairClock(self.deficit, self.ledger, served, board)
        entries: list[QueueEntry] = []
        dry: set[str] = set()
        met_at: dict[int, int] = {}
        ended: str | None = None
        ids = self.snapshot.ids
        while len(entries) < limit:
            position = len(entries)
            available = {name for name in shares if name not in dry}
            if TIME_SHARED in available and not clock.can_serve(board, dry):
                available.discard(TIME_SHARED)
            choice = deal.choose(position, available)
            if choice is None:
                ended = _why_ended(board, self.deficit, dry)
                break
            lane_name = clock.next(board, dry) if choice == TIME_SHARED else choice
            walk = walks[lane_name]
            taken = walk.take(board)
            if taken is None:
                dry.add(lane_name)
                walk.exhausted_at = position + 1
                if choice != TIME_SHARED:
                    deal.drop(lane_name, position)
                continue
            row, relaxed = taken
            lane = walk.lane
            reason = lane.reason(row, board, relaxed)
            lane.serve(row, board)
            board.add(row)
            deal.served(choice)
            if choice == TIME_SHARED:
                clock.served(lane_name, board)
            walk.entries += 1
            entries.append(QueueEntry(position + 1, int(ids[row]), lane_name, reason))
            _note_met(board, met_at, position + 1)
        summary = self._summary(board, walks, limit, entries, met_at, ended)
        return Queue(entries=entries, summary=summary)

    def _summary(
        self,
        board: Board,
        walks: dict[str, _Walk],
        limit: int,
        entries: list[QueueEntry],
        met_at: dict[int, int],
        ended: str | None,
    ) -> Summary:
        plan, snapshot, ledger = self.plan, self.snapshot, self.ledger
        statuses = []
        for c, name in enumerate(snapshot.classes):
            spec = plan.classes[name]
            p = snapshot.scores[:, c]
            held = p[self.open & (p >= plan.selection.min_score)]
            candidates, available = held.shape[0], float(held.sum(dtype=np.float64))
            labeled = int(ledger.class_week[c])
            shortage = None
            if not spec.easy and labeled + available < spec.quota:
                shortage = (
                    f"{name}: quota {spec.quota}, {labeled} labeled this week, and the "
                    f"{candidates} candidates are expected to hold only {available:.1f} "
                    f"more; widen collection (new sources, more data) or lower weekly_min"
                )
            statuses.append(
                QuotaStatus(
                    name=name,
                    tier=spec.tier.value,
                    quota=spec.quota,
                    labeled=labeled,
                    expected_in_head=float(board.expected[c]) - labeled,
                    met_at_rank=(0 if labeled >= spec.quota else met_at.get(c)),
                    candidates=candidates,
                    expected_available=available,
                    lead_time=ledger.lead_time([c]),
                    shortage=shortage,
                )
            )
        lanes = [LaneStatus(name, walk.entries, walk.exhausted_at) for name, walk in walks.items()]
        return Summary(
            week=self.week,
            requested=limit,
            length=len(entries),
            classes=statuses,
            lanes=lanes,
            easy_count=board.easy_count,
            easy_cap=board.easy_cap,
            ended_because=ended,
        )


class _FairClock:
    """Start-time fair queuing over the deficit lanes (deficit round robin without the bursts).

    Each lane carries a virtual start tag; the open lane with the smallest tag serves next and its
    tag advances by ``cost / claim``. A lane that was closed (the easy lane at its cap) resumes at
    the current virtual time, so it cannot bank credit while closed.
    """

    def __init__(
        self,
        lanes: list[DeficitLane],
        ledger: Ledger,
        served: Mapping[str, int] | None = None,
        board: Board | None = None,
    ) -> None:
        self.lanes = lanes
        self.tags = dict.fromkeys((lane.name for lane in lanes), 0.0)
        self.costs = {lane.name: lane.cost(ledger) for lane in lanes}
        self.now = 0.0
        if served and board is not None:
            self._resume(served, board)

    def _resume(self, served: Mapping[str, int], board: Board) -> None:
        """Continue this week's time sharing from what each lane has served.

        A lane's tag is its served items times its current quantum (cost / claim); virtual time
        is where the most advanced lane started its last item. Lanes behind it restart at that
        time (as a lane reopening would), so nobody bursts to catch up.
        """
        quanta = {lane.name: self.costs[lane.name] / lane.claim(board) for lane in self.lanes}
        self.tags = {name: served.get(name, 0) * quantum for name, quantum in quanta.items()}
        if any(served.get(name, 0) for name in self.tags):
            self.now = max(
                self.tags[name] - quanta[name] for name in self.tags if served.get(name, 0)
            )

    def _open(self, board: Board, dry: set[str]) -> list[DeficitLane]:
        return [lane for lane in self.lanes if lane.name not in dry and lane.is_open(board)]

    def can_serve(self, board: Board, dry: set[str]) -> bool:
        return bool(self._open(board, dry))

    def next(self, board: Board, dry: set[str]) -> str:
        best: tuple[float, int, str] | None = None
        for index, lane in enumerate(self._open(board, dry)):
            tag = max(self.tags[lane.name], self.now)
            self.tags[lane.name] = tag
            if best is None or (tag, index) < best[:2]:
                best = (tag, index, lane.name)
        assert best is not None, "next() is only called when a deficit lane can serve"
        return best[2]

    def served(self, name: str, board: Board) -> None:
        lane = next(lane for lane in self.lanes if lane.name == name)
        self.now = self.tags[name]
        self.tags[name] += self.costs[name] / lane.claim(board)


def _note_met(board: Board, met_at: dict[int, int], rank: int) -> None:
    """Remember the rank at which each class's quota was first met in expectation."""
    reached = np.flatnonzero((board.expected >= board.quota) & (board.quota > 0))
    for c in reached.tolist():
        met_at.setdefault(c, rank)


def _why_ended(board: Board, lanes: list[DeficitLane], dry: set[str]) -> str:
    easy_waiting = any(not lane.is_open(board) and lane.name not in dry for lane in lanes)
    if easy_waiting:
        return (
            f"the easy lane reached its cap ({board.easy_cap} this week) and the must-not-miss "
            "quotas are not met, and no other lane has candidates left"
        )
    return "every lane ran out of candidates"


def plan_queue(snapshot: Snapshot, plan: Plan, now: datetime, limit: int) -> Queue:
    """The first ``limit`` entries of the queue for ``snapshot`` under ``plan`` at ``now``.

    Deterministic: the same snapshot (in any line order), plan and ``now`` give the same queue.
    """
    return Planner(snapshot, plan, now).head(limit)
