"""Review sampling: ISO 2859-1-style switching, lot acceptance, samplers, settling, IPW estimates."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelplan.plan import TIER_ORDER, Plan, PlanError, Switching, Tier, parse_plan
from labelplan.review import (
    Item,
    Opinion,
    Status,
    SwitchState,
    acceptance_number,
    decide,
    defect,
    initial_switch,
    judge_lot,
    lot_due,
    replay,
    review_rate,
    risk_tier,
    settle,
    weighted_error_rate,
)

RULES = Switching()
MONDAY = datetime(2024, 5, 6, 9, tzinfo=UTC)

PLAN = parse_plan(
    """
seed: 5
classes:
  bicycle: {tier: must_not_miss, labels: [Bicycle]}
  dog: {tier: experimental, labels: [Dog]}
  bus: {tier: nice_to_have, labels: [Bus]}
  car: {tier: nice_to_have, easy: true, labels: [Car]}
review:
  small_lot: 0
  rates: {must_not_miss: 0.3, nice_to_have: 0.1, experimental: 0.05}
  escalation: {experts: [expert@example.com]}
"""
)


def states(verdicts: list[bool], tier: Tier = Tier.nice_to_have) -> list[SwitchState]:
    switch = initial_switch(tier)
    seen = []
    for passed in verdicts:
        switch = switch.after(passed, RULES)
        seen.append(switch.state)
    return seen


# ---------------------------------------------------------------- switching rules


def test_must_not_miss_starts_tightened_and_the_other_tiers_normal() -> None:
    assert initial_switch(Tier.must_not_miss).state is SwitchState.tightened
    assert initial_switch(Tier.nice_to_have).state is SwitchState.normal
    assert initial_switch(Tier.experimental).state is SwitchState.normal


def test_normal_turns_tightened_when_two_of_five_consecutive_lots_fail() -> None:
    assert states([True, False, True, True, False])[-1] is SwitchState.tightened
    assert states([False, True, True, True])[-1] is SwitchState.normal


def test_failures_further_apart_than_the_window_do_not_tighten() -> None:
    run = [False, True, True, True, True, False]
    assert states(run)[-1] is SwitchState.normal


def test_tightened_turns_normal_after_five_passing_lots_in_a_row() -> None:
    seen = states([True] * 5, Tier.must_not_miss)
    assert seen[:4] == [SwitchState.tightened] * 4
    assert seen[4] is SwitchState.normal


def test_a_failure_on_tightened_restarts_the_count_of_passes() -> None:
    seen = states([True, True, True, True, False, True, True, True, True], Tier.must_not_miss)
    assert seen[-1] is SwitchState.tightened
    assert (
        states([True, True, True, True, False, *[True] * 5], Tier.must_not_miss)[-1]
        is SwitchState.normal
    )


def test_normal_turns_reduced_after_a_long_clean_run_and_back_on_any_failure() -> None:
    seen = states([True] * 10)
    assert seen[8] is SwitchState.normal and seen[9] is SwitchState.reduced
    assert states([True] * 10 + [True, True, False])[-1] is SwitchState.normal


def test_a_normal_state_entered_from_reduced_remembers_the_failure_that_ended_it() -> None:
    # reduced -> normal on a failure; one more failure within the window tightens at once
    assert states([True] * 10 + [False, False])[-1] is SwitchState.tightened


@given(st.lists(st.booleans(), max_size=60))
def test_switching_only_ever_moves_along_the_iso_transitions(verdicts: list[bool]) -> None:
    allowed = {
        (SwitchState.normal, SwitchState.tightened),
        (SwitchState.normal, SwitchState.reduced),
        (SwitchState.tightened, SwitchState.normal),
        (SwitchState.reduced, SwitchState.normal),
    }
    switch = initial_switch(Tier.nice_to_have)
    for passed in verdicts:
        after = switch.after(passed, RULES)
        if after.state is not switch.state:
            assert (switch.state, after.state) in allowed
            if after.state is SwitchState.normal and switch.state is SwitchState.reduced:
                assert not passed
            if after.state is SwitchState.tightened:
                assert not passed
            if after.state is SwitchState.reduced:
                assert passed
        switch = after
    assert replay(Tier.nice_to_have, verdicts, RULES) == switch


# ---------------------------------------------------------------- lot acceptance


def test_acceptance_numbers_match_the_binomial_definition() -> None:
    assert acceptance_number(0, 0.04) == 0
    assert acceptance_number(5, 0.025) == 1
    assert acceptance_number(20, 0.04) == 2
    assert acceptance_number(50, 0.065) == 6


@given(st.integers(1, 200), st.floats(0.001, 0.3))
def test_a_lot_at_exactly_aql_passes_at_least_95_percent_of_the_time(n: int, aql: float) -> None:
    c = acceptance_number(n, aql)

    def cdf(k: int) -> float:
        return sum(math.comb(n, i) * aql**i * (1 - aql) ** (n - i) for i in range(k + 1))

    assert cdf(c) >= 0.95 - 1e-12
    assert c == 0 or cdf(c - 1) < 0.95


def test_tightened_review_judges_a_lot_more_strictly_than_normal() -> None:
    defects = [True] * 4 + [False] * 36  # Ac is 4 on normal, 3 on tightened
    normal = judge_lot(1, Tier.nice_to_have, "2024-05-06", 40, defects, 0.04, SwitchState.normal)
    tight = judge_lot(1, Tier.nice_to_have, "2024-05-06", 40, defects, 0.04, SwitchState.tightened)
    assert normal is not None and tight is not None
    assert tight.acceptance < normal.acceptance
    assert normal.passed and not tight.passed


def test_a_lot_without_reviewed_items_has_no_verdict() -> None:
    assert judge_lot(1, Tier.experimental, "2024-05-06", 12, [], 0.065, SwitchState.normal) is None


# ---------------------------------------------------------------- sampling


def items(n: int, classes: frozenset[str], annotator: int = 7, start: int = 0) -> list[Item]:
    return [
        Item(start + i, annotator, MONDAY + timedelta(seconds=i), classes, {}) for i in range(n)
    ]


def test_an_item_is_reviewed_at_the_tier_of_its_most_critical_class_labeled_or_predicted() -> None:
    assert risk_tier({"car"}, PLAN) is Tier.nice_to_have
    assert risk_tier({"car", "bicycle"}, PLAN) is Tier.must_not_miss
    [labeled_car_but_likely_bicycle] = decide(
        [Item(1, 7, MONDAY, frozenset({"car"}), {"bicycle": 0.9})], PLAN, {}, {}
    )
    assert labeled_car_but_likely_bicycle.tier is Tier.must_not_miss


@pytest.mark.parametrize(
    ("classes", "state", "rate"),
    [
        ({"bus"}, SwitchState.normal, 0.1),
        ({"dog"}, SwitchState.normal, 0.05),
        ({"bicycle"}, SwitchState.tightened, 0.6),
        ({"bicycle"}, SwitchState.normal, 0.3),
    ],
)
def test_sampled_share_holds_the_rate_within_binomial_tolerance(
    classes: set[str], state: SwitchState, rate: float
) -> None:
    n = 20_000
    tier = risk_tier(classes, PLAN)
    decided = decide(items(n, frozenset(classes)), PLAN, {(7, tier): state}, {})
    share = sum(d.sampled for d in decided) / n
    assert all(d.probability == pytest.approx(rate) for d in decided)
    assert abs(share - rate) < 4 * math.sqrt(rate * (1 - rate) / n)


def test_decisions_are_the_same_on_every_pass() -> None:
    batch = items(300, frozenset({"bus"}))
    assert decide(batch, PLAN, {}, {}) == decide(list(reversed(batch)), PLAN, {}, {})


def test_small_lots_are_reviewed_in_full() -> None:
    plan = parse_plan(
        "classes: {bus: {tier: nice_to_have}}\nreview: {small_lot: 4, rates: {nice_to_have: 0.0,"
        " experimental: 0.0}}"
    )
    decided = decide(items(6, frozenset({"bus"})), plan, {}, {})
    assert [d.sampled for d in decided] == [True] * 4 + [False] * 2
    assert [d.probability for d in decided[:4]] == [1.0] * 4
    # a later pass continues the same lot: it is already full
    later = decide(
        items(2, frozenset({"bus"}), start=100), plan, {}, {(7, Tier.nice_to_have, "2024-05-06"): 6}
    )
    assert [d.sampled for d in later] == [False, False]


def test_a_low_confidence_must_not_miss_prediction_is_reviewed_and_escalated() -> None:
    [unsure] = decide([Item(1, 7, MONDAY, frozenset({"car"}), {"bicycle": 0.45})], PLAN, {}, {})
    assert unsure.sampled and unsure.escalate and unsure.probability == 1.0
    assert "low-confidence" in unsure.reason


plan_rates = st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(
    lambda r: sorted(r, reverse=True)
)


@settings(max_examples=200)
@given(
    plan_rates,
    st.floats(1.0, 5.0),
    st.floats(0.05, 1.0),
    st.lists(st.sampled_from(list(SwitchState)), min_size=3, max_size=3),
    st.floats(0.0, 1.0),
)
def test_a_critical_class_is_never_sampled_less_than_a_lower_tier(
    rates: list[float],
    tightened: float,
    reduced: float,
    tier_states: list[SwitchState],
    override: float,
) -> None:
    plan = Plan.model_validate(
        {
            "classes": {
                "bicycle": {"tier": "must_not_miss"},
                "bus": {"tier": "nice_to_have", "review_rate": max(override, rates[2])},
                "dog": {"tier": "experimental"},
            },
            "review": {
                "rates": dict(
                    zip(["must_not_miss", "nice_to_have", "experimental"], rates, strict=True)
                ),
                "switching": {"tightened_factor": tightened, "reduced_factor": reduced},
            },
        }
    )
    mine = dict(zip(TIER_ORDER, tier_states, strict=True))
    got = [review_rate([c], plan.classes[c].tier, mine, plan) for c in ("bicycle", "bus", "dog")]
    assert got[0] >= got[1] >= got[2]
    assert all(0.0 <= r <= 1.0 for r in got)


# ---------------------------------------------------------------- settling


def opinion(annotator: int, *classes: str, minute: int = 0, expert: bool = False) -> Opinion:
    return Opinion(annotator, frozenset(classes), MONDAY + timedelta(minutes=minute), expert)


def test_two_agreeing_annotators_settle_an_item() -> None:
    s = settle([opinion(1, "bus"), opinion(2, "bus", minute=1)], PLAN, rare=True)
    assert s.status is Status.agreed and s.answer == frozenset({"bus"})


def test_a_disagreement_on_a_rare_class_escalates_and_asks_one_more_annotator() -> None:
    s = settle([opinion(1, "bicycle"), opinion(2, "car", minute=1)], PLAN, rare=True)
    assert s.status is Status.escalated and s.answer is None and s.want == 3


def test_a_bare_majority_never_settles_an_escalated_rare_item() -> None:
    three = [opinion(1, "bicycle"), opinion(2, "car", minute=1), opinion(3, "bicycle", minute=2)]
    s = settle(three, PLAN, rare=True, escalated=True)
    assert s.status is Status.escalated and s.want == 4  # 2 of 3 is below 0.75
    four = [*three, opinion(4, "bicycle", minute=3)]
    s = settle(four, PLAN, rare=True, escalated=True)
    assert s.status is Status.settled_by_agreement and s.answer == frozenset({"bicycle"})


def test_an_expert_decides_an_escalated_item() -> None:
    s = settle(
        [
            opinion(1, "bicycle"),
            opinion(2, "car", minute=1),
            opinion(9, "car", minute=2, expert=True),
        ],
        PLAN,
        rare=True,
        escalated=True,
    )
    assert s.status is Status.settled_by_expert and s.answer == frozenset({"car"})


def test_escalation_stops_asking_at_max_annotations() -> None:
    five = [opinion(i, "bicycle" if i % 2 else "car", minute=i) for i in range(1, 6)]
    s = settle(five, PLAN, rare=True, escalated=True)
    assert s.status is Status.escalated and s.want == 5


def test_a_disagreement_without_a_rare_class_is_counted_not_escalated() -> None:
    s = settle([opinion(1, "car"), opinion(2, "bus", minute=1)], PLAN, rare=False)
    assert s.status is Status.disagreed


def test_the_first_annotation_is_a_defect_when_it_differs_from_the_settled_answer() -> None:
    first = opinion(1, "bicycle")
    settled = settle(
        [first, opinion(2, "car", minute=1), opinion(9, "car", expert=True, minute=2)],
        PLAN,
        rare=True,
        escalated=True,
    )
    assert defect(first, settled) is True
    assert defect(first, settle([first, opinion(2, "bicycle", minute=1)], PLAN, rare=True)) is False
    assert defect(first, settle([first], PLAN, rare=True)) is None


# ---------------------------------------------------------------- inverse-probability weights


def test_weighted_error_rate_weights_each_reviewed_item_by_one_over_its_probability() -> None:
    # 2 must-not-miss items reviewed at pi=1 (one wrong), 2 easy items at pi=0.1 (none wrong):
    # they stand for 2 + 20 items, of which 1 is wrong.
    estimate = weighted_error_rate([True, False, False, False], [1.0, 1.0, 0.1, 0.1])
    assert estimate.rate == pytest.approx(1 / 22)
    assert estimate.represented == pytest.approx(22)
    unweighted = 1 / 4
    assert estimate.rate < unweighted


def test_weighted_error_rate_of_a_census_has_no_sampling_error() -> None:
    estimate = weighted_error_rate([True, False, False, False], [1.0] * 4)
    assert estimate.rate == pytest.approx(0.25) and estimate.stderr == 0.0


@settings(max_examples=30, deadline=None)
@given(st.floats(0.05, 0.5), st.floats(0.05, 0.5), st.integers(0, 10_000))
def test_weighted_error_rate_recovers_the_population_rate_under_unequal_sampling(
    rare_error: float, easy_error: float, seed: int
) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    n_rare, n_easy = 2_000, 18_000
    truth = np.concatenate([rng.random(n_rare) < rare_error, rng.random(n_easy) < easy_error])
    pi = np.concatenate([np.full(n_rare, 0.6), np.full(n_easy, 0.05)])
    picked = rng.random(len(pi)) < pi
    estimate = weighted_error_rate(list(truth[picked]), list(pi[picked]))
    assert estimate.rate is not None and estimate.stderr is not None
    assert abs(estimate.rate - truth.mean()) < 5 * estimate.stderr + 1e-9


def test_weighted_error_rate_refuses_items_that_were_not_sampled() -> None:
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        weighted_error_rate([True], [0.0])


def test_a_single_reviewed_item_gives_a_rate_but_no_standard_error() -> None:
    estimate = weighted_error_rate([True], [0.3])
    assert estimate.rate == 1.0 and estimate.stderr is None and estimate.interval() is None


# ---------------------------------------------------------------- when a lot is judged


def test_a_lot_is_judged_only_after_its_week_and_the_grace_period() -> None:
    # the plan week starts on Monday 2024-05-06 (UTC); it ends Monday 2024-05-13 00:00
    end = datetime(2024, 5, 13, tzinfo=UTC)
    assert not lot_due("2024-05-06", end - timedelta(minutes=1), PLAN)
    assert not lot_due("2024-05-06", end + timedelta(hours=23, minutes=59), PLAN)  # grace: 24 h
    assert lot_due("2024-05-06", end + timedelta(hours=24), PLAN)
    prompt = PLAN.model_copy(
        update={"review": PLAN.review.model_copy(update={"lot_grace_hours": 0.0})}
    )
    assert lot_due("2024-05-06", end, prompt)
    assert not lot_due("2024-05-06", end - timedelta(seconds=1), prompt)


def test_the_grace_period_follows_the_plan_timezone() -> None:
    berlin = parse_plan(
        """
week: {start: monday, timezone: Europe/Berlin}
classes:
  car: {tier: nice_to_have, labels: [Car]}
review: {lot_grace_hours: 2}
"""
    )
    # the Berlin week of 2024-05-06 ends at midnight local time: 22:00 UTC on Sunday
    end = datetime(2024, 5, 12, 22, tzinfo=UTC)
    assert not lot_due("2024-05-06", end + timedelta(hours=1, minutes=59), berlin)
    assert lot_due("2024-05-06", end + timedelta(hours=2), berlin)


def test_review_mode_and_grace_are_validated_with_the_allowed_values() -> None:
    with pytest.raises(PlanError) as caught:
        parse_plan(
            """
classes:
  car: {tier: nice_to_have, labels: [Car]}
review: {mode: enterprise, lot_grace_hours: -1}
"""
        )
    text = str(caught.value) + " ".join(str(p) for p in caught.value.problems)
    assert "review.mode" in text and "second_annotation" in text and "review_api" in text
    assert "review.lot_grace_hours" in text
