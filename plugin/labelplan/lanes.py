"""Lanes: each one proposes candidates for the queue for one reason; the scheduler mixes them.

A lane is a small class behind one interface (in the manner of small-text's query strategies):
it ranks its candidates once, vectorized over all open tasks (:meth:`Lane.rank`), and then, while
the scheduler builds the queue, says whether a candidate is still admissible given what has been
served (:meth:`Lane.admits`) and why an entry is there (:meth:`Lane.reason`). Adding a lane never
touches the scheduling loop.

Two families share the queue differently (see ``docs/planner.md``):

- :class:`ReservedLane`: a fixed share of queue *entries* (discovery, control, hard negatives).
- :class:`DeficitLane`: a claim on annotator *time* that grows with how far the lane is behind
  (quota lanes, the easy lane); serving an item costs its expected labeling time.

The board (:class:`Board`) is what the lanes read: realized counts from the ledger plus what the
queue built so far is expected to add.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labelplan.ledger import Ledger
from labelplan.plan import Plan
from labelplan.snapshot import Snapshot

Rows = npt.NDArray[np.int32]
Priorities = npt.NDArray[np.float32]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def uniform_keys(ids: npt.NDArray[np.int64], seed: int, salt: int) -> npt.NDArray[np.float64]:
    """One uniform number in (0, 1) per task id, fixed by ``(seed, salt, id)``.

    It is the splitmix64 finalizer of the id mixed with the seed, so a task keeps its number
    when other tasks come and go: the random lanes are reproducible and stable under
    incremental updates, which a generator drawn in snapshot order would not be.
    """
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) ^ np.uint64(
            (seed * 0x9E3779B97F4A7C15 + salt) & 0xFFFFFFFFFFFFFFFF
        )
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


@dataclass
class LaneContext:
    """What lanes rank from: the snapshot, the plan, the ledger and which tasks are still open.

    Lanes rank over every task a column at a time (``snapshot.scores[:, c]`` is contiguous) and
    mask out tasks that are not open, rather than gathering the open tasks' rows first: at a
    million tasks that gather, once per lane, was most of the cost of ranking.
    """

    snapshot: Snapshot
    plan: Plan
    ledger: Ledger
    open: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        self._top: npt.NDArray[np.int32] | None = None

    def open_rows(self) -> Rows:
        """The rows of the open tasks."""
        return np.flatnonzero(self.open).astype(np.int32)

    @property
    def top(self) -> npt.NDArray[np.int32]:
        """Each task's most likely class (the first of equals); scores never change, so once."""
        if self._top is None:
            scores = self.snapshot.scores
            top = np.zeros(scores.shape[0], dtype=np.int32)
            best = scores[:, 0].copy()
            for c in range(1, scores.shape[1]):
                better = scores[:, c] > best
                top[better] = c
                np.maximum(best, scores[:, c], out=best)
            self._top = top
        return self._top

    def unseen(self, rows: Rows | None, c: int) -> npt.NDArray[np.bool_]:
        """Whether each row (None: each task) has a source value never labeled for class ``c``."""
        sources = self.snapshot.sources
        found = np.zeros(sources.shape[0] if rows is None else rows.shape[0], dtype=bool)
        for key, seen in enumerate(self.ledger.seen):
            if seen[c].all():  # the usual case once a class has some history
                continue
            # A trailing True stands for the unknown value (code -1), which is never unseen.
            seen_or_unknown = np.append(seen[c], True)
            codes = sources[:, key] if rows is None else sources[rows, key]
            found |= ~seen_or_unknown[codes]
        return found


class Board:
    """The queue being built, as counts: realized (from the ledger) plus expected (from entries).

    An entry adds its class probabilities to ``expected``: a task served with p(bicycle) = 0.8
    is expected to bring 0.8 of a bicycle. Caps that must hold for sure (near-duplicate groups,
    the easy cap, source shares) count entries as whole items instead.
    """

    def __init__(self, context: LaneContext) -> None:
        plan, ledger, snapshot = context.plan, context.ledger, context.snapshot
        self.context = context
        self.scores = snapshot.scores
        self.quota = np.array([plan.classes[c].quota for c in snapshot.classes], dtype=np.float64)
        self.must_not_miss = np.array(
            [snapshot.classes.index(c) for c in plan.must_not_miss()], dtype=np.int64
        )
        self.expected = ledger.class_week.astype(np.float64)
        self.class_total = ledger.class_week.copy()
        #: ``source_counts[j][c, v]``: items of class ``c`` with value ``v`` for source key ``j``.
        #: The extra last column is the unknown value (code -1); it stays 0.
        self.source_counts = [np.pad(counts, ((0, 0), (0, 1))) for counts in ledger.source_week]
        self.easy_count = ledger.easy_week
        self.easy_cap = plan.easy_cap.per_week
        self.dup_week = ledger.dup_week.copy()
        self.dup_overall = ledger.dup_overall.copy()
        self.dup_week_cap = plan.near_duplicates.per_week
        self.dup_overall_cap = plan.near_duplicates.overall
        #: ``full[g]``: group ``g`` reached a cap; the extra last entry stands for "no group"
        #: (code -1), which is never full.
        self.full = np.append(
            (self.dup_week >= self.dup_week_cap) | (self.dup_overall >= self.dup_overall_cap),
            False,
        )
        self.dup = snapshot.dup
        self.taken = ~context.open
        self.length = 0
        self._met = self.quota_met()

    def quota_met(self) -> bool:
        """Whether every must-not-miss class has reached its weekly quota (realized + expected)."""
        m = self.must_not_miss
        return bool((self.expected[m] >= self.quota[m]).all())

    @property
    def rare_quotas_met(self) -> bool:
        return self._met

    def alive(self, rows: Rows) -> npt.NDArray[np.bool_]:
        """Which rows may still be served: not served or labeled, and their group not full.

        A full near-duplicate group stays full while the queue is built, so a row that is not
        alive now never will be.
        """
        return ~(self.taken[rows] | self.full[self.dup[rows]])

    def alive_one(self, row: int) -> bool:
        """:meth:`alive` for one row, without numpy's per-call overhead."""
        return not (self.taken[row] or self.full[self.dup[row]])

    def add(self, row: int) -> None:
        """Count a served task toward expected class counts and its duplicate group."""
        self.taken[row] = True
        self.expected += self.scores[row]
        group = int(self.dup[row])
        if group >= 0:
            self.dup_week[group] += 1
            self.dup_overall[group] += 1
            self.full[group] = (
                self.dup_week[group] >= self.dup_week_cap
                or self.dup_overall[group] >= self.dup_overall_cap
            )
        self.length += 1
        if not self._met:
            self._met = self.quota_met()


class Lane(ABC):
    """One reason to put a task in the queue."""

    name: str
    #: Whether the lane's ranking uses which source values were seen per class (invalidated when
    #: an annotation shows a new value).
    uses_seen: bool = False

    @abstractmethod
    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        """The lane's candidate rows and their priority (higher is served first)."""

    def admits(self, rows: Rows, board: Board) -> npt.NDArray[np.bool_]:
        """Which of ``rows`` serving now keeps the lane's own limits; the default has none."""
        return np.ones(rows.shape[0], dtype=bool)

    def admits_one(self, row: int, board: Board) -> bool:
        """:meth:`admits` for one row (the common case: the lane's best candidate is fine)."""
        return True

    def serve(self, row: int, board: Board) -> None:  # noqa: B027 - an optional hook
        """Count a served row toward the lane's own limits."""

    @abstractmethod
    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        """Why ``row`` is in the queue, for a person, given the board before serving it."""


class ReservedLane(Lane):
    """A lane with a fixed share of queue entries."""

    share: float


MET_CLAIM = 0.25
"""A quota lane's claim, in items, once its quota is (expected to be) met."""


class DeficitLane(Lane):
    """A lane that claims annotator time in proportion to how far behind it is."""

    @abstractmethod
    def claim(self, board: Board) -> float:
        """The lane's weight in the time-sharing schedule, > 0."""

    @abstractmethod
    def cost(self, ledger: Ledger) -> float:
        """Expected seconds to label one of the lane's items."""

    def is_open(self, board: Board) -> bool:
        """Whether the lane may serve now (the easy lane closes at its cap)."""
        return True


class QuotaLane(DeficitLane):
    """Tasks likely to be of one class, to fill its weekly quota.

    Priority is the expected yield times a bonus for uncertainty and for novelty::

        p_c * (1 + uncertainty_weight * (1 - |2 p_c - 1|)) * (1 + prefer_unseen * unseen)

    ``1 - |2p - 1|`` is 1 when the model is undecided (p = 0.5) and 0 when it is sure, so the lane
    mostly serves likely items but lifts the ones a label will teach the model most about
    (uncertainty sampling, Lewis & Gale 1994). ``unseen`` is 1 when the task has a source value
    never labeled for the class. While serving, the lane keeps every source value at or under
    ``sources.max_share`` of the class's items this week, whenever an alternative exists.
    """

    uses_seen = True

    def __init__(self, plan: Plan, snapshot: Snapshot, name: str) -> None:
        spec = plan.classes[name]
        self.name = f"quota:{name}"
        self.label = name
        self.c = snapshot.classes.index(name)
        self.quota = spec.quota
        self.weight = spec.claim_weight
        self.min_score = plan.selection.min_score
        self.uncertainty_weight = plan.selection.uncertainty_weight
        self.prefer_unseen = plan.sources.prefer_unseen
        self.max_share = plan.sources.max_share
        self.keys = snapshot.source_keys
        self.values = snapshot.source_values
        self.sources = snapshot.sources

    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        p = context.snapshot.scores[:, self.c]
        threshold = max(self.min_score, np.finfo(np.float32).tiny)
        rows = np.flatnonzero(context.open & (p >= threshold)).astype(np.int32)
        p = p[rows]
        priority = p * (1.0 + self.uncertainty_weight * (1.0 - np.abs(2.0 * p - 1.0)))
        if self.prefer_unseen:
            priority = priority * (1.0 + self.prefer_unseen * context.unseen(rows, self.c))
        return rows, priority.astype(np.float32)

    def _over(self, row: int, board: Board) -> list[int]:
        """Source keys whose value would pass its share of the class's items if ``row`` came."""
        total = int(board.class_total[self.c]) + 1
        allowed = max(1.0, self.max_share * total)
        over = []
        for key, value in enumerate(self.sources[row].tolist()):
            if value >= 0 and board.source_counts[key][self.c, value] + 1 > allowed:
                over.append(key)
        return over

    def admits(self, rows: Rows, board: Board) -> npt.NDArray[np.bool_]:
        allowed = max(1.0, self.max_share * (int(board.class_total[self.c]) + 1))
        ok = np.ones(rows.shape[0], dtype=bool)
        for key, counts in enumerate(board.source_counts):
            fits = counts[self.c] + 1 <= allowed  # per value; true for unknown (-1, count 0)
            ok &= fits[self.sources[rows, key]]
        return ok

    def admits_one(self, row: int, board: Board) -> bool:
        return not self.keys or not self._over(row, board)

    def serve(self, row: int, board: Board) -> None:
        board.class_total[self.c] += 1
        for key, value in enumerate(self.sources[row].tolist()):
            if value >= 0:
                board.source_counts[key][self.c, value] += 1

    def claim(self, board: Board) -> float:
        """Weight times the items still missing; once the quota is met the lane yields, keeping
        a quarter of its weight so a met rare class still trickles in (at a must-not-miss
        weight of 4, as much as the easy lane)."""
        remaining = self.quota - board.expected[self.c]
        return self.weight * max(float(remaining), MET_CLAIM)

    def cost(self, ledger: Ledger) -> float:
        return ledger.lead_time([self.c])

    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        ledger = board.context.ledger
        labeled = int(ledger.class_week[self.c])
        now = board.expected[self.c]
        p = float(board.scores[row, self.c])
        text = (
            f"quota: {self.label} is {now:.0f} of {self.quota} this week "
            f"({labeled} labeled + {now - labeled:.1f} expected ahead); p({self.label})={p:.2f}"
        )
        new = [
            f"{self.keys[k]}={self.values[k][v]}"
            for k, v in enumerate(self.sources[row].tolist())
            if v >= 0 and not ledger.seen[k][self.c, v]
        ]
        if new and self.prefer_unseen:
            text += f"; new for {self.label}: {', '.join(new)}"
        if relaxed:
            over = ", ".join(
                f"{self.keys[k]}={self.values[k][int(self.sources[row, k])]}"
                for k in self._over(row, board)
            )
            text += f"; {over} goes over its {self.max_share:.0%} share: no alternative left"
        return text


class EasyLane(DeficitLane):
    """Items of frequent classes, the most uncertain first, capped until rare quotas are met.

    Uncertainty is one minus the margin between the two most likely classes (margin sampling,
    Scheffer et al. 2001). Until every must-not-miss quota is met, the lane serves at most
    ``easy_cap.per_week`` items this week (labeled ones included); then it is uncapped.
    Its claim on time is one item's worth: it gets what quota lanes leave.
    """

    def __init__(self, plan: Plan, snapshot: Snapshot) -> None:
        self.name = "easy"
        self.classes = [snapshot.classes.index(name) for name in plan.easy()]
        self.names = snapshot.classes
        self.cap = plan.easy_cap.per_week

    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        if not self.classes:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        rows = np.flatnonzero(context.open & np.isin(context.top, self.classes)).astype(np.int32)
        scores = context.snapshot.scores
        best = scores[rows, 0]
        second = np.zeros_like(best)
        for c in range(1, scores.shape[1]):  # a contiguous column at a time
            p = scores[rows, c]
            np.maximum(second, np.minimum(best, p), out=second)
            np.maximum(best, p, out=best)
        margin = best - second if scores.shape[1] > 1 else best
        return rows, (1.0 - margin).astype(np.float32)

    def is_open(self, board: Board) -> bool:
        return board.rare_quotas_met or board.easy_count < self.cap

    def serve(self, row: int, board: Board) -> None:
        board.easy_count += 1

    def claim(self, board: Board) -> float:
        return 1.0

    def cost(self, ledger: Ledger) -> float:
        return ledger.lead_time(self.classes)

    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        scores = board.scores[row]
        top = int(np.argmax(scores))
        if board.rare_quotas_met:
            gate = "must-not-miss quotas are met"
        else:
            gate = f"{board.easy_count + 1} of {self.cap} easy items allowed before rare quotas"
        return f"easy: likely {self.names[top]} ({float(scores[top]):.2f}), uncertain; {gate}"


class HardNegativeLane(ReservedLane):
    """Tasks that look like a rare class but probably are not: its most confusable negatives.

    Candidates have ``min_score <= p_c < max_score`` and another class more likely; the highest
    p_c comes first. Labeling them teaches the model where the class ends, which uncertainty
    sampling alone under-serves when the class is rare.
    """

    def __init__(self, plan: Plan, snapshot: Snapshot, name: str) -> None:
        self.name = f"hard_negative:{name}"
        self.label = name
        self.c = snapshot.classes.index(name)
        self.share = plan.classes[name].hard_negatives
        self.low = plan.hard_negatives.min_score
        self.high = plan.hard_negatives.max_score
        self.names = snapshot.classes

    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        p = context.snapshot.scores[:, self.c]
        near = np.flatnonzero(context.open & (p >= self.low) & (p < self.high))
        rows = near[context.top[near] != self.c].astype(np.int32)
        return rows, p[rows].astype(np.float32)

    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        scores = board.scores[row]
        top = int(np.argmax(scores))
        return (
            f"hard negative for {self.label}: p({self.label})={float(scores[self.c]):.2f} but "
            f"most likely {self.names[top]} ({float(scores[top]):.2f})"
        )


class DiscoveryLane(ReservedLane):
    """The reserve for finding rare-class items the model would not rank first.

    A weighted random sample without replacement (Efraimidis & Spirakis 2006: key u^(1/w)),
    with weight ``w = 0.01 + max_c p_c * (1 + prefer_unseen * unseen_c)`` over rare classes.
    Every open task can be drawn, likelier ones more often, so rare items the model scores low
    (new cameras, new seasons) still surface: model-guided lanes never starve discovery.
    """

    uses_seen = True

    def __init__(self, plan: Plan, snapshot: Snapshot) -> None:
        self.name = "discovery"
        self.share = plan.discovery_reserve
        self.rare = [snapshot.classes.index(name) for name in plan.rare()]
        self.names = snapshot.classes
        self.prefer_unseen = plan.sources.prefer_unseen
        self.seed = plan.seed

    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        scores = context.snapshot.scores
        weight = np.zeros(scores.shape[0], dtype=np.float32)
        for c in self.rare:  # over every task, a contiguous column at a time
            w = scores[:, c]
            if self.prefer_unseen:
                w = w * (1.0 + self.prefer_unseen * context.unseen(None, c))
            np.maximum(weight, w, out=weight)
        rows = context.open_rows()
        u = uniform_keys(context.snapshot.ids[rows], self.seed, salt=1)
        return rows, (np.log(u) / (0.01 + weight[rows])).astype(np.float32)

    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        scores = board.scores[row]
        if not self.rare:
            return "discovery: weighted random draw (no rare classes in the plan)"
        best = max(self.rare, key=lambda c: float(scores[c]))
        return (
            f"discovery: random draw weighted by rare-class chance; "
            f"p({self.names[best]})={float(scores[best]):.2f}"
        )


class ControlLane(ReservedLane):
    """A uniform random sample of open tasks, reproducible from the plan's seed.

    It is the unbiased slice that metrics (prevalence, error rates) are estimated from.
    """

    def __init__(self, plan: Plan, snapshot: Snapshot) -> None:
        self.name = "control"
        self.share = plan.control_share
        self.seed = plan.seed

    def rank(self, context: LaneContext) -> tuple[Rows, Priorities]:
        rows = context.open_rows()
        u = uniform_keys(context.snapshot.ids[rows], self.seed, salt=2)
        return rows, u.astype(np.float32)

    def reason(self, row: int, board: Board, relaxed: bool) -> str:
        return f"control: uniform random sample (seed {self.seed})"


def lanes_for(plan: Plan, snapshot: Snapshot) -> tuple[list[ReservedLane], list[DeficitLane]]:
    """Every lane the plan asks for: reserved (fixed shares) and deficit (time-shared) lanes."""
    reserved: list[ReservedLane] = [
        HardNegativeLane(plan, snapshot, name)
        for name in plan.rare()
        if plan.classes[name].hard_negatives > 0
    ]
    if plan.discovery_reserve > 0:
        reserved.append(DiscoveryLane(plan, snapshot))
    if plan.control_share > 0:
        reserved.append(ControlLane(plan, snapshot))
    deficit: list[DeficitLane] = [QuotaLane(plan, snapshot, name) for name in plan.rare()]
    if plan.easy():
        deficit.append(EasyLane(plan, snapshot))
    return reserved, deficit
