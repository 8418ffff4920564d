"""Risk-based review: which labeled items get a blind second annotation, and what follows.

Pure functions over plain data; the sync (:mod:`labelplan.sync`) feeds them from the store and
carries their decisions to Label Studio (``overlap`` for a second annotator, Data Manager tabs).

* **Risk tier.** An item's tier is that of the most critical class it involves: a class it was
  labeled with, or one the model predicts at least ``review.predicted_min_score``. So a likely
  bicycle labeled "car" (a possible miss of a must-not-miss class) is reviewed as must-not-miss.
* **Sampling** is Poisson sampling: each item is drawn independently with its own inclusion
  probability ``pi`` (the tier's or class's rate, scaled by the switching state), from a hash of
  the plan seed and the task id, so a decision never changes when passes are repeated. The
  first ``small_lot`` items of every lot get ``pi = 1`` (small lots are reviewed 100 %). A
  must-not-miss prediction of low confidence gets ``pi = 1`` and is escalated.
* **Switching** follows ISO 2859-1 (*Sampling procedures for inspection by attributes — Part 1*,
  clause 9) per (tier x annotator), a lot being one week of that annotator's items in that tier:
  normal → tightened when 2 of the last 5 lots failed; tightened → normal after 5 passing lots in
  a row; normal → reduced after 10 passing lots in a row; reduced → normal on any failed lot.
  Must-not-miss starts tightened. The numbers are the plan's ``review.switching``. A lot is
  judged ``review.lot_grace_hours`` after its week ends (:func:`lot_due`).
* **Lot acceptance.** A lot's reviewed items are judged against the acceptance number ``Ac``:
  the smallest ``c`` with ``P(Binomial(n, AQL) <= c) >= 0.95`` — a lot of exactly AQL quality
  passes 95 % of the time, as in the single sampling plans of ISO 2859-1. Tightened review
  judges at the next lower AQL of the ISO preferred series (x 0.63).
* **Settling.** Two annotations that agree settle an item. A disagreement on an item involving
  a rare class escalates it: one more annotator at a time until the share agreeing with the most
  common answer reaches ``escalation.agreement_threshold``, or an expert's annotation decides.
  Nothing on a rare class is settled by a bare majority.
* **Error rates** are Hájek (ratio) estimates with inverse-probability weights ``1 / pi``
  (Horvitz & Thompson, 1952; Hájek, 1971), because sampling is not uniform: must-not-miss items
  and small lots are over-represented among the reviewed.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from labelplan.ledger import week_of
from labelplan.plan import TIER_ORDER, Plan, Switching, Tier

ACCEPT_CONFIDENCE = 0.95
"""A lot of exactly AQL quality passes with this probability (the producer's risk is 5 %)."""

TIGHTENED_AQL_STEP = 0.63
"""Tightened review judges at the next lower AQL of the ISO preferred (R5) series: x 10^(-1/5)."""


class SwitchState(enum.StrEnum):
    """How hard one annotator's items in one tier are reviewed."""

    normal = "normal"
    tightened = "tightened"
    reduced = "reduced"


# --------------------------------------------------------------------------- switching


@dataclass(frozen=True)
class Switch:
    """The switching state of one (tier x annotator) and the run of lots that led to it.

    ``recent`` holds the verdicts since the state was entered (on normal, the latest
    ``window``); ``passes`` counts passing lots in a row within the state.
    """

    state: SwitchState
    recent: tuple[bool, ...] = ()
    passes: int = 0

    def after(self, passed: bool, rules: Switching) -> Switch:
        """The state after one more judged lot (ISO 2859-1 clause 9, numbers from ``rules``)."""
        passes = self.passes + 1 if passed else 0
        if self.state is SwitchState.tightened:
            if passes >= rules.normal_after:
                return Switch(SwitchState.normal)
            return Switch(SwitchState.tightened, passes=passes)
        if self.state is SwitchState.reduced:
            if not passed:
                return Switch(SwitchState.normal, recent=(False,))
            return Switch(SwitchState.reduced, passes=passes)
        recent = (*self.recent, passed)[-rules.window :]
        if recent.count(False) >= rules.tighten_after:
            return Switch(SwitchState.tightened)
        if passes >= rules.reduce_after:
            return Switch(SwitchState.reduced)
        return Switch(SwitchState.normal, recent=recent, passes=passes)


def initial_switch(tier: Tier) -> Switch:
    """Must-not-miss review starts tightened; the other tiers start normal."""
    return Switch(SwitchState.tightened if tier is Tier.must_not_miss else SwitchState.normal)


def replay(tier: Tier, verdicts: Iterable[bool], rules: Switching) -> Switch:
    """The switching state after the judged lots ``verdicts``, oldest first."""
    switch = initial_switch(tier)
    for passed in verdicts:
        switch = switch.after(passed, rules)
    return switch


def state_factor(state: SwitchState, rules: Switching) -> float:
    """How a switching state scales a base review rate."""
    if state is SwitchState.tightened:
        return rules.tightened_factor
    if state is SwitchState.reduced:
        return rules.reduced_factor
    return 1.0


# --------------------------------------------------------------------------- lots


def acceptance_number(n: int, aql: float, confidence: float = ACCEPT_CONFIDENCE) -> int:
    """The most nonconforming items a sample of ``n`` may hold and pass at quality level ``aql``.

    The smallest ``c`` with ``P(Binomial(n, aql) <= c) >= confidence``: the single sampling plan
    whose producer's risk at the AQL is ``1 - confidence`` (the idea behind ISO 2859-1 tables).
    """
    if n <= 0:
        return 0
    cumulative = 0.0
    for c in range(n + 1):
        cumulative += math.comb(n, c) * aql**c * (1.0 - aql) ** (n - c)
        if cumulative >= confidence:
            return c
    return n


@dataclass(frozen=True)
class LotVerdict:
    """One judged lot: an annotator's items of one tier in one week."""

    annotator: int
    tier: Tier
    week: str
    size: int
    reviewed: int
    defects: int
    acceptance: int
    passed: bool
    state: SwitchState
    """The switching state the lot was reviewed under."""


def judge_lot(
    annotator: int,
    tier: Tier,
    week: str,
    size: int,
    defects: Sequence[bool],
    aql: float,
    state: SwitchState,
) -> LotVerdict | None:
    """Pass or fail a lot from its reviewed items (``defects[i]``: item ``i`` was wrong).

    A lot with no reviewed item has no verdict: it neither passes nor fails.
    """
    if not defects:
        return None
    level = aql * TIGHTENED_AQL_STEP if state is SwitchState.tightened else aql
    acceptance = acceptance_number(len(defects), level)
    found = sum(defects)
    return LotVerdict(
        annotator, tier, week, size, len(defects), found, acceptance, found <= acceptance, state
    )


def lot_due(week: str, now: datetime, plan: Plan) -> bool:
    """Whether the lots of plan week ``week`` (its start date, as :func:`week_key` writes it) may
    be judged at ``now``: the week is over and ``review.lot_grace_hours`` have passed since, so a
    review made just after the week ends still counts."""
    first = date.fromisoformat(week)
    zone = ZoneInfo(plan.week.timezone)
    start = datetime(first.year, first.month, first.day, 12, tzinfo=zone)  # midday: no DST edge
    end = week_of(start, plan).end
    moment = now if now.tzinfo else now.replace(tzinfo=UTC)
    return moment >= end + timedelta(hours=plan.review.lot_grace_hours)


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Item:
    """A labeled task as the sampler sees it: its first annotator and what it involves."""

    task_id: int
    annotator: int
    labeled_at: datetime
    classes: frozenset[str]
    """Plan classes of the first annotation."""
    probs: Mapping[str, float] = field(default_factory=dict)
    """The model's probability per plan class."""
    annotators: int = 1
    """Distinct annotators who have labeled it so far."""


@dataclass(frozen=True)
class Decision:
    """Whether an item gets a second annotation, with its inclusion probability and why."""

    task_id: int
    annotator: int
    tier: Tier
    week: str
    position: int
    """1 for the annotator's first item of this tier this week, and so on."""
    probability: float
    sampled: bool
    reason: str
    state: SwitchState
    escalate: bool = False
    """A low-confidence must-not-miss prediction: goes straight to the Escalations tab."""


def uniform(seed: int, task_id: int) -> float:
    """A number in [0, 1) fixed by the seed and the task id: the item's draw, forever."""
    digest = hashlib.blake2b(f"{seed}:{task_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def involved_classes(item: Item, plan: Plan) -> frozenset[str]:
    """Classes the item was labeled with or that the model finds likely enough to matter."""
    likely = {c for c, p in item.probs.items() if p >= plan.review.predicted_min_score}
    return frozenset(c for c in item.classes | likely if c in plan.classes)


def risk_tier(classes: Iterable[str], plan: Plan) -> Tier:
    """The most critical tier among ``classes`` (the least critical when there are none)."""
    tiers = {plan.classes[c].tier for c in classes if c in plan.classes}
    return next((tier for tier in TIER_ORDER if tier in tiers), TIER_ORDER[-1])


def tier_ceiling(plan: Plan, tier: Tier) -> float:
    """The highest base rate any class of ``tier`` has (the tier's own rate at least)."""
    rates = [plan.review_rate(c) for c, spec in plan.classes.items() if spec.tier is tier]
    return max([plan.review.rates.of(tier), *rates])


def review_rate(
    classes: Iterable[str], tier: Tier, states: Mapping[Tier, SwitchState], plan: Plan
) -> float:
    """The inclusion probability of an item of ``tier`` involving ``classes``.

    The highest base rate among its classes, scaled by the switching state of its tier, and never
    below what any less critical tier gets from the same annotator: a critical item is never
    reviewed less than a lower-tier one.
    """
    rules = plan.review.switching
    names = [c for c in classes if c in plan.classes]
    base = max((plan.review_rate(c) for c in names), default=plan.review.rates.of(tier))
    normal = SwitchState.normal
    rate = min(1.0, base * state_factor(states.get(tier, normal), rules))
    lower = TIER_ORDER[TIER_ORDER.index(tier) + 1 :]
    floor = max(
        (
            min(1.0, tier_ceiling(plan, t) * state_factor(states.get(t, normal), rules))
            for t in lower
        ),
        default=0.0,
    )
    return max(rate, floor)


def low_confidence(item: Item, plan: Plan) -> tuple[str, float] | None:
    """A must-not-miss class the model is unsure about for this item, with its probability."""
    band = plan.review.escalation
    unsure = [
        (c, p)
        for c, p in item.probs.items()
        if c in plan.classes
        and plan.classes[c].tier is Tier.must_not_miss
        and band.min_score <= p < band.low_confidence
    ]
    return min(unsure, key=lambda cp: (abs(cp[1] - 0.5), cp[0])) if unsure else None


def week_key(moment: datetime, plan: Plan) -> str:
    """The plan week containing ``moment``, as the date it starts (``2024-05-06``)."""
    return week_of(moment, plan).start.date().isoformat()


def decide(
    items: Iterable[Item],
    plan: Plan,
    states: Mapping[tuple[int, Tier], SwitchState],
    lot_sizes: Mapping[tuple[int, Tier, str], int],
) -> list[Decision]:
    """Decide, once, whether each newly labeled item gets a blind second annotation.

    ``states`` is the switching state per (annotator, tier) (missing: the tier's starting
    state); ``lot_sizes`` how many items each (annotator, tier, week) lot already had decided,
    so the small-lot rule holds across passes. Items are taken in labeling order.
    """
    review = plan.review
    counts: Counter[tuple[int, Tier, str]] = Counter(lot_sizes)
    decisions = []
    for item in sorted(items, key=lambda i: (i.labeled_at, i.task_id)):
        classes = involved_classes(item, plan)
        tier = risk_tier(classes, plan)
        week = week_key(item.labeled_at, plan)
        lot = (item.annotator, tier, week)
        counts[lot] += 1
        position = counts[lot]
        mine = {t: states.get((item.annotator, t), initial_switch(t).state) for t in TIER_ORDER}
        state = mine[tier]
        unsure = low_confidence(item, plan)
        if item.annotators >= 2:
            pi, reason = 1.0, "already has a second annotation"
        elif unsure is not None:
            pi = 1.0
            reason = (
                f"{unsure[0]} predicted at {unsure[1]:.2f}: a low-confidence must-not-miss item"
            )
        elif position <= review.small_lot:
            pi = 1.0
            reason = (
                f"small lot: item {position} of the first {review.small_lot} in {tier.value} "
                f"this week, reviewed 100 %"
            )
        else:
            pi = review_rate(classes, tier, mine, plan)
            reason = f"{tier.value} on {state.value} review: rate {pi:.0%}"
        sampled = pi >= 1.0 or uniform(plan.seed, item.task_id) < pi
        decisions.append(
            Decision(
                item.task_id,
                item.annotator,
                tier,
                week,
                position,
                pi,
                sampled,
                reason if sampled else f"not drawn ({reason})",
                state,
                escalate=unsure is not None and item.annotators < 2,
            )
        )
    return decisions


# --------------------------------------------------------------------------- settling


@dataclass(frozen=True)
class Opinion:
    """One annotator's answer on an item."""

    annotator: int
    classes: frozenset[str]
    at: datetime
    expert: bool = False


class Status(enum.StrEnum):
    """Where an item stands after its annotations."""

    single = "single"
    """One annotator so far."""
    agreed = "agreed"
    """Independent annotators gave the same answer."""
    disagreed = "disagreed"
    """Annotators differ on an item with no rare class: counted, not escalated."""
    escalated = "escalated"
    """Disputed on a rare class (or low confidence): waiting for more annotations or an expert."""
    settled_by_agreement = "settled_by_agreement"
    settled_by_expert = "settled_by_expert"


SETTLED = frozenset({Status.agreed, Status.settled_by_agreement, Status.settled_by_expert})


@dataclass(frozen=True)
class Settlement:
    """An item's status, the agreement among its annotators and, when settled, the answer."""

    status: Status
    agreement: float
    answer: frozenset[str] | None
    annotators: int
    want: int
    """How many distinct annotators the item should have (its target ``overlap``)."""

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    @property
    def awaiting_review(self) -> bool:
        """A sampled item in this state still waits for its second opinion (an expert alone can
        settle an escalated item, which then waits for nothing)."""
        return self.annotators < 2 and not self.settled


def latest_opinions(opinions: Iterable[Opinion]) -> list[Opinion]:
    """Each annotator's latest answer, in the order the annotators first answered."""
    first: dict[int, datetime] = {}
    latest: dict[int, Opinion] = {}
    for opinion in sorted(opinions, key=lambda o: o.at):
        first.setdefault(opinion.annotator, opinion.at)
        latest[opinion.annotator] = opinion
    return sorted(latest.values(), key=lambda o: first[o.annotator])


def settle(
    opinions: Iterable[Opinion], plan: Plan, *, rare: bool, escalated: bool = False
) -> Settlement:
    """Settle an item from its annotations (see the module docstring for the rules).

    ``rare``: the item involves a non-easy class; ``escalated``: it is already in escalation.
    """
    rules = plan.review.escalation
    answers = latest_opinions(opinions)
    n = len(answers)
    experts = [o for o in answers if o.expert]
    if experts and (escalated or n >= 2):
        decided = max(experts, key=lambda o: o.at)
        agreement = sum(o.classes == decided.classes for o in answers) / n
        return Settlement(Status.settled_by_expert, agreement, decided.classes, n, n)
    if n == 0:
        return Settlement(Status.single, 1.0, None, 0, 1)
    counts = Counter(o.classes for o in answers)
    top = max(counts.values())
    modal = sorted((c for c, k in counts.items() if k == top), key=sorted)
    agreement = top / n
    if n == 1:
        status = Status.escalated if escalated else Status.single
        return Settlement(status, 1.0, None, 1, 2 if escalated else 1)
    if agreement >= rules.agreement_threshold and len(modal) == 1:
        status = Status.settled_by_agreement if escalated else Status.agreed
        return Settlement(status, agreement, modal[0], n, n)
    if not (rare or escalated):
        return Settlement(Status.disagreed, agreement, None, n, n)
    return Settlement(Status.escalated, agreement, None, n, min(n + 1, rules.max_annotations))


def defect(first: Opinion, settlement: Settlement) -> bool | None:
    """Whether the first annotation was wrong: it differs from the settled answer, or (while
    unsettled) another annotator disagreed. ``None`` when the item has one annotator."""
    if settlement.annotators < 2:
        return None
    if settlement.answer is not None:
        return first.classes != settlement.answer
    return True


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimate:
    """An inverse-probability-weighted error rate and its standard error."""

    rate: float | None
    stderr: float | None
    reviewed: int
    represented: float
    """The number of items the reviewed ones stand for (sum of ``1 / pi``)."""

    def interval(self, z: float = 1.96) -> tuple[float, float] | None:
        """A normal-approximation confidence interval, clipped to [0, 1]."""
        if self.rate is None or self.stderr is None:
            return None
        return max(0.0, self.rate - z * self.stderr), min(1.0, self.rate + z * self.stderr)


def weighted_error_rate(errors: Sequence[bool], probabilities: Sequence[float]) -> Estimate:
    """The Hájek estimate of the error rate of all items from the reviewed ones.

    ``p = sum(e_i / pi_i) / sum(1 / pi_i)``: each reviewed item stands for ``1 / pi_i`` items,
    so a must-not-miss item reviewed at ``pi = 1`` does not outweigh an easy one reviewed at
    ``pi = 0.05``. The variance is the linearized one for Poisson sampling (Särndal, Swensson &
    Wretman, *Model Assisted Survey Sampling*, 1992, §5.7):
    ``V = sum((1 - pi_i) / pi_i^2 * (e_i - p)^2) / N^2`` with ``N = sum(1 / pi_i)``; no standard
    error from a single reviewed item.
    """
    if len(errors) != len(probabilities):
        raise ValueError(
            f"errors ({len(errors)}) and probabilities ({len(probabilities)}) must pair up"
        )
    if any(not 0.0 < p <= 1.0 for p in probabilities):
        raise ValueError("inclusion probabilities must be in (0, 1]; an unsampled item has none")
    if not errors:
        return Estimate(None, None, 0, 0.0)
    weights = [1.0 / p for p in probabilities]
    total = sum(weights)
    rate = sum(w for w, e in zip(weights, errors, strict=True) if e) / total
    variance = sum(
        (1.0 - p) * w * w * (float(e) - rate) ** 2
        for p, w, e in zip(probabilities, weights, errors, strict=True)
    ) / (total * total)
    stderr = math.sqrt(variance) if len(errors) >= 2 else None  # one item has no spread
    return Estimate(rate, stderr, len(errors), total)
