"""Per-class weekly metrics and alarms: what the team sees in Label Studio, the report and Prometheus.

Pure functions over plain data (the sync reads the store and calls :func:`compute`). Per class
and plan week: raw count, reviewed count, disagreement rate, Gwet's AC1 with a bootstrap
confidence interval, an inverse-probability-weighted error rate, median time-to-label from
Label Studio's ``lead_time``, skip rate and quota status; per week the same times for all and
for rare items; per tier the review states of the annotators; and the alarms of
``docs/metrics.md``.

Why AC1 and not Cohen's kappa: a rare class has a prevalence of a few percent, and kappa then
collapses towards 0 even when annotators almost always agree (the "kappa paradox", Feinstein &
Cicchetti, 1990). Gwet's AC1 (Gwet, *Computing inter-rater reliability and its variance in the
presence of high agreement*, Br. J. Math. Stat. Psychol. 61, 2008) corrects for chance with
``pe = sum_k pi_k (1 - pi_k) / (K - 1)``, which stays small at low prevalence. Per class it is
computed on "class present / absent" over every reviewed item of the week, for any number of
raters per item.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.ledger import week_of
from labelplan.plan import TIER_ORDER, Plan, Tier
from labelplan.review import (
    Opinion,
    Settlement,
    Status,
    SwitchState,
    defect,
    settle,
    week_key,
    weighted_error_rate,
)

BOOTSTRAP_ROUNDS = 1000
"""Resamples of the items for the AC1 confidence interval."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Rating:
    """One annotation (or skip) on a task, with plan classes instead of Label Studio labels."""

    annotator: int | None
    classes: frozenset[str]
    at: datetime
    lead_time: float | None = None
    skipped: bool = False
    expert: bool = False
    review: bool = False
    """A reviewer's verdict read from the review API (Enterprise), not an annotation: it counts
    as an opinion, not as labeling work (no time-to-label, no skip)."""


@dataclass(frozen=True)
class TaskFacts:
    """Everything the metrics need to know about one task."""

    task_id: int
    ratings: tuple[Rating, ...] = ()
    probs: Mapping[str, float] = field(default_factory=dict)
    sampled: bool = False
    probability: float | None = None
    """The inclusion probability of the review sample, when the task was decided."""
    escalated_at: datetime | None = None


# --------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class Agreement:
    """Gwet's AC1 over some items, with a percentile bootstrap interval."""

    ac1: float | None
    low: float | None
    high: float | None
    items: int


def gwet_ac1(counts: npt.ArrayLike) -> float | None:
    """Gwet's AC1 from ``counts[i, k]``: how many raters put item ``i`` in category ``k``.

    Items with fewer than two raters are ignored; ``None`` when no item has two.
    ``AC1 = (pa - pe) / (1 - pe)`` with ``pa`` the mean share of agreeing rater pairs per item
    and ``pe = sum_k pi_k (1 - pi_k) / (K - 1)``, ``pi_k`` the mean share of raters choosing
    ``k`` (Gwet, 2008, eq. 18-19).
    """
    table = np.asarray(counts, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError("counts must be an items x categories table with at least 2 categories")
    raters = table.sum(axis=1)
    table = table[raters >= 2]
    if len(table) == 0:
        return None
    return float(_ac1(table[None, :, :])[0])


def _ac1(tables: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """AC1 of each ``tables[b]`` (items x categories), vectorized over ``b`` for the bootstrap."""
    raters = tables.sum(axis=2)
    pairs = (tables * (tables - 1)).sum(axis=2) / (raters * (raters - 1))
    pa = pairs.mean(axis=1)
    shares = (tables / raters[:, :, None]).mean(axis=1)
    k = tables.shape[2]
    pe = (shares * (1 - shares)).sum(axis=1) / (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(pe < 1.0, (pa - pe) / (1.0 - pe), 1.0)
    return np.asarray(value, dtype=np.float64)


def agreement(counts: npt.ArrayLike, *, seed: int = 0, level: float = 0.95) -> Agreement:
    """AC1 with a percentile bootstrap confidence interval over items (Efron & Tibshirani, 1993)."""
    table = np.asarray(counts, dtype=np.float64)
    table = table[table.sum(axis=1) >= 2] if table.size else table.reshape(0, 2)
    value = gwet_ac1(table) if len(table) else None
    if value is None:
        return Agreement(None, None, None, 0)
    if len(table) < 2:
        return Agreement(value, None, None, len(table))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(table), size=(BOOTSTRAP_ROUNDS, len(table)))
    samples = _ac1(table[picks])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Agreement(value, float(low), float(high), len(table))


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class ClassWeek:
    """One class in one plan week."""

    week: str
    name: str
    tier: str
    quota: int
    count: int
    """Items labeled this week whose answer includes the class (settled answer when settled)."""
    reviewed: int
    """Of those, items with at least two independent annotations."""
    involved: int
    """Reviewed items of the week where any annotator chose the class."""
    disagreement: float | None
    """Share of ``involved`` items where annotators differ on the class."""
    ac1: float | None
    ac1_low: float | None
    ac1_high: float | None
    error_rate: float | None
    """Inverse-probability-weighted share of the class's items whose first annotation was wrong."""
    error_stderr: float | None
    lead_time: float | None
    """Median seconds to label an item of the class."""
    skip_rate: float | None
    quota_met: bool
    expected: float
    """Items of the class the plan could expect a week: min(quota, what the unlabeled pool holds)."""


@dataclass(frozen=True)
class WeekTotals:
    """All classes together in one plan week."""

    week: str
    count: int
    reviewed: int
    lead_time: float | None
    lead_time_rare: float | None
    skip_rate: float | None


@dataclass(frozen=True)
class TierReview:
    """How many annotators are on each review state in a tier."""

    tier: str
    normal: int
    tightened: int
    reduced: int


@dataclass(frozen=True)
class Alarm:
    """Something a person should look at, with the numbers behind it."""

    kind: str
    """``zero_items``, ``quota_missed``, ``disagreement`` or ``escalation_waiting``."""
    subject: str
    """A class name, or a task id for an escalation."""
    week: str
    message: str
    value: float
    threshold: float


@dataclass(frozen=True)
class Metrics:
    """The metrics of one project at one moment."""

    generated_at: str
    week: str
    """The current plan week."""
    weeks: list[str]
    """Plan weeks covered, oldest first."""
    classes: list[ClassWeek]
    totals: list[WeekTotals]
    tiers: list[TierReview]
    alarms: list[Alarm]
    awaiting_review: int
    escalations_open: int
    review_by: str = ""
    """How sampled items are reviewed on this server, as the sync decided it (empty: unknown)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def current(self, name: str) -> ClassWeek | None:
        """A class's row for the current week."""
        return next((r for r in self.classes if r.week == self.week and r.name == name), None)


# --------------------------------------------------------------------------- computing


@dataclass(frozen=True)
class _Task:
    facts: TaskFacts
    week: str | None
    answer: frozenset[str]
    union: frozenset[str]
    settlement: Settlement
    error: bool | None
    probability: float


def _digest(task: TaskFacts, plan: Plan) -> _Task:
    done = [r for r in task.ratings if not r.skipped]
    first = min(done, key=lambda r: r.at) if done else None
    opinions = [
        Opinion(r.annotator, r.classes, r.at, r.expert) for r in done if r.annotator is not None
    ]
    union = frozenset().union(*(r.classes for r in done)) if done else frozenset()
    likely = {c for c, p in task.probs.items() if p >= plan.review.predicted_min_score}
    rare = any(c in plan.classes and not plan.classes[c].easy for c in union | likely)
    settlement = settle(opinions, plan, rare=rare, escalated=task.escalated_at is not None)
    answer = settlement.answer if settlement.settled and settlement.answer is not None else union
    first_opinion = next((o for o in opinions if first and o.at == first.at), None)
    error = defect(first_opinion, settlement) if first_opinion else None
    probability = task.probability if task.sampled and task.probability else 1.0
    return _Task(
        task,
        week_key(first.at, plan) if first else None,
        answer,
        union,
        settlement,
        error,
        probability,
    )


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def plan_weeks(now: datetime, plan: Plan, count: int) -> list[str]:
    """The ``count`` plan weeks up to the one containing ``now``, oldest first."""
    start = week_of(now, plan).start
    return [
        week_key(start - timedelta(days=7 * i) + timedelta(hours=12), plan) for i in range(count)
    ][::-1]


def compute(
    tasks: Sequence[TaskFacts],
    plan: Plan,
    now: datetime,
    *,
    states: Mapping[tuple[int, Tier], SwitchState] | None = None,
    weeks: int = 8,
    review_by: str = "",
) -> Metrics:
    """Per-class weekly metrics, week totals, review states and alarms (see the module docstring)."""
    digested = [_digest(t, plan) for t in tasks]
    covered = plan_weeks(now, plan, weeks)
    current = covered[-1]
    rows: list[ClassWeek] = []
    totals: list[WeekTotals] = []
    pool = [d for d in digested if not d.facts.ratings]
    by_week: dict[str, list[_Task]] = {w: [] for w in covered}
    for d in digested:
        if d.week in by_week:
            by_week[d.week].append(d)
    ratings_by_week: dict[str, list[tuple[_Task, Rating]]] = {w: [] for w in covered}
    for d in digested:
        for rating in d.facts.ratings:
            if rating.review:
                continue
            key = week_key(rating.at, plan)
            if key in ratings_by_week:
                ratings_by_week[key].append((d, rating))
    for week in covered:
        items = by_week[week]
        reviewed = [d for d in items if d.settlement.annotators >= 2]
        for name, spec in plan.classes.items():
            rows.append(
                _class_week(
                    week, name, spec.tier, items, reviewed, ratings_by_week[week], pool, plan
                )
            )
        rated = ratings_by_week[week]
        rare_names = set(plan.rare())
        totals.append(
            WeekTotals(
                week,
                len(items),
                len(reviewed),
                _median(r.lead_time for _, r in rated if not r.skipped),
                _median(r.lead_time for d, r in rated if not r.skipped and d.answer & rare_names),
                _share(sum(r.skipped for _, r in rated), len(rated)),
            )
        )
    tiers = _tiers(states or {})
    alarms = _alarms(rows, covered, digested, plan, now)
    awaiting = sum(
        1 for d in digested if d.facts.sampled and d.facts.ratings and d.settlement.awaiting_review
    )
    escalations = sum(
        1 for d in digested if d.facts.escalated_at is not None and not d.settlement.settled
    )
    return Metrics(
        now.isoformat(timespec="seconds"),
        current,
        covered,
        rows,
        totals,
        tiers,
        alarms,
        awaiting,
        escalations,
        review_by,
    )


def _class_week(
    week: str,
    name: str,
    tier: Tier,
    items: list[_Task],
    reviewed: list[_Task],
    rated: list[tuple[_Task, Rating]],
    pool: list[_Task],
    plan: Plan,
) -> ClassWeek:
    spec = plan.classes[name]
    mine = [d for d in items if name in d.answer]
    mine_reviewed = [d for d in mine if d.settlement.annotators >= 2]
    involved = [d for d in reviewed if name in d.union]
    split = [
        d
        for d in involved
        if len({name in r.classes for r in d.facts.ratings if not r.skipped}) > 1
    ]
    counts = [
        (
            sum(name in r.classes for r in d.facts.ratings if not r.skipped),
            sum(name not in r.classes for r in d.facts.ratings if not r.skipped),
        )
        for d in reviewed
    ]
    agreed = (
        agreement(np.asarray(counts, dtype=np.float64).reshape(-1, 2), seed=plan.seed)
        if involved  # a class nobody chose in the week has no agreement to speak of
        else Agreement(None, None, None, 0)
    )
    judged = [d for d in mine_reviewed if d.error is not None]
    estimate = weighted_error_rate([bool(d.error) for d in judged], [d.probability for d in judged])
    attributed = [(d, r) for d, r in rated if _attributed(d, name)]
    available = sum(float(d.facts.probs.get(name, 0.0)) for d in pool)
    quota = spec.quota
    return ClassWeek(
        week,
        name,
        tier.value,
        quota,
        len(mine),
        len(mine_reviewed),
        len(involved),
        _share(len(split), len(involved)),
        agreed.ac1,
        agreed.low,
        agreed.high,
        estimate.rate,
        estimate.stderr,
        _median(r.lead_time for d in mine for r in d.facts.ratings if not r.skipped),
        _share(sum(r.skipped for _, r in attributed), len(attributed)),
        len(mine) >= quota,
        min(float(quota), available) if quota else available,
    )


def _attributed(task: _Task, name: str) -> bool:
    """Whether a task counts for a class's skip rate: its answer, else the model's top class."""
    if task.answer:
        return name in task.answer
    probs = task.facts.probs
    return bool(probs) and max(probs, key=lambda c: (probs[c], c)) == name


def _tiers(states: Mapping[tuple[int, Tier], SwitchState]) -> list[TierReview]:
    found = []
    for tier in TIER_ORDER:
        mine = [s for (_, t), s in states.items() if t is tier]
        found.append(
            TierReview(
                tier.value,
                mine.count(SwitchState.normal),
                mine.count(SwitchState.tightened),
                mine.count(SwitchState.reduced),
            )
        )
    return found


def _alarms(
    rows: list[ClassWeek], weeks: list[str], tasks: list[_Task], plan: Plan, now: datetime
) -> list[Alarm]:
    rules = plan.review.alarms
    labeled = [d.week for d in tasks if d.week is not None]
    active_from = min(labeled) if labeled else None
    complete = [w for w in weeks[:-1] if active_from is not None and w >= active_from]
    row = {(r.week, r.name): r for r in rows}
    found: list[Alarm] = []
    for name in plan.rare():
        recent = complete[-rules.zero_weeks :]
        if len(recent) == rules.zero_weeks and all(row[(w, name)].count == 0 for w in recent):
            expected = row[(recent[-1], name)].expected
            if expected >= rules.min_expected:
                found.append(
                    Alarm(
                        "zero_items",
                        name,
                        recent[-1],
                        f"{name}: no new items for {rules.zero_weeks} weeks "
                        f"(the plan expected about {expected:.0f} a week)",
                        0.0,
                        expected,
                    )
                )
        if complete:
            last = row[(complete[-1], name)]
            if last.quota and last.count < last.quota:
                found.append(
                    Alarm(
                        "quota_missed",
                        name,
                        last.week,
                        f"{name}: quota missed in the week of {last.week}: "
                        f"{last.count} of {last.quota}",
                        float(last.count),
                        float(last.quota),
                    )
                )
    for week in [*complete[-1:], weeks[-1]]:
        for name in plan.classes:
            r = row[(week, name)]
            if (
                r.disagreement is not None
                and r.involved >= rules.min_reviewed
                and r.disagreement > rules.disagreement
            ):
                found.append(
                    Alarm(
                        "disagreement",
                        name,
                        week,
                        f"{name}: annotators disagree on {r.disagreement:.0%} of {r.involved} "
                        f"reviewed items in the week of {week} (alarm above "
                        f"{rules.disagreement:.0%})",
                        r.disagreement,
                        rules.disagreement,
                    )
                )
    limit = plan.review.escalation.max_wait_hours
    for d in tasks:
        opened = d.facts.escalated_at
        if opened is None or d.settlement.settled:
            continue
        hours = (now - opened).total_seconds() / 3600.0
        if hours > limit:
            found.append(
                Alarm(
                    "escalation_waiting",
                    str(d.facts.task_id),
                    week_key(opened, plan),
                    f"task {d.facts.task_id}: escalated {hours:.0f} h ago and still not settled "
                    f"(the plan allows {limit:.0f} h)",
                    hours,
                    limit,
                )
            )
    return found


def status_counts(tasks: Sequence[TaskFacts], plan: Plan) -> dict[Status, int]:
    """How many tasks are in each review status (for the sync's report line)."""
    found: dict[Status, int] = {}
    for task in tasks:
        if not task.ratings:
            continue
        status = _digest(task, plan).settlement.status
        found[status] = found.get(status, 0) + 1
    return found
