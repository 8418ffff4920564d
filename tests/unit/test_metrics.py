"""Weekly per-class metrics and alarms, checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelplan.metrics import Rating, TaskFacts, agreement, compute, gwet_ac1
from labelplan.plan import Tier, parse_plan
from labelplan.review import SwitchState

PLAN = parse_plan(
    """
classes:
  bicycle: {tier: must_not_miss, labels: [Bicycle], weekly_min: 3}
  car: {tier: nice_to_have, easy: true, labels: [Car]}
review:
  alarms: {min_reviewed: 2, disagreement: 0.3}
  escalation: {max_wait_hours: 24}
"""
)
WEEK = datetime(2024, 5, 13, 8, tzinfo=UTC)  # a Monday
NOW = WEEK + timedelta(days=2)


def rating(
    annotator: int | None,
    *classes: str,
    hours: float = 0,
    lead: float | None = None,
    skipped: bool = False,
) -> Rating:
    return Rating(annotator, frozenset(classes), WEEK + timedelta(hours=hours), lead, skipped)


def test_ac1_matches_gwets_formula_on_a_worked_example() -> None:
    # pa = (1 + 1 + 0 + 1) / 4 = 0.75; pi = (0.375, 0.625); pe = 2 * 0.375 * 0.625 = 0.46875
    assert gwet_ac1([[2, 0], [0, 2], [1, 1], [0, 2]]) == pytest.approx((0.75 - 0.46875) / 0.53125)


def test_ac1_stays_high_for_a_rare_class_annotators_agree_on() -> None:
    # 1 positive item of 50, both annotators agree on all: kappa-like measures would be unstable
    table = [[2, 0]] + [[0, 2]] * 49
    assert gwet_ac1(table) == pytest.approx(1.0)
    one_slip = [[2, 0], [1, 1]] + [[0, 2]] * 48
    value = gwet_ac1(one_slip)
    assert value is not None and value > 0.95


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=30))
def test_ac1_is_at_most_one_and_its_interval_contains_it(rows: list[tuple[int, int]]) -> None:
    rated = [r for r in rows if sum(r) >= 2]
    found = agreement(rows, seed=1)
    if not rated:
        assert found.ac1 is None
        return
    assert found.ac1 is not None and found.ac1 <= 1.0 + 1e-9
    if found.low is not None and found.high is not None:
        assert found.low <= found.high


def scenario() -> list[TaskFacts]:
    """Six tasks labeled this week, one last week, two unlabeled (the pool)."""
    return [
        # 1: bicycle, reviewed, agreed
        TaskFacts(
            1,
            (rating(1, "bicycle", lead=10), rating(2, "bicycle", hours=1, lead=20)),
            {"bicycle": 0.8},
            True,
            1.0,
        ),
        # 2: bicycle vs car, reviewed, disputed (a rare class): escalated 30 h ago
        TaskFacts(
            2,
            (rating(1, "bicycle", lead=30), rating(2, "car", hours=1, lead=40)),
            {"bicycle": 0.5},
            True,
            1.0,
            WEEK + timedelta(hours=18),
        ),
        # 3, 4: cars, one reviewed (agreed) at pi = 0.25, one not sampled
        TaskFacts(
            3,
            (rating(1, "car", lead=4), rating(2, "car", hours=1, lead=6)),
            {"car": 0.9},
            True,
            0.25,
        ),
        TaskFacts(4, (rating(1, "car", lead=8),), {"car": 0.9}, False, 0.25),
        # 5: car, sampled at pi = 0.25 but not yet second-annotated
        TaskFacts(5, (rating(2, "car", lead=2),), {"car": 0.9}, True, 0.25),
        # 6: skipped once, then labeled car
        TaskFacts(6, (rating(1, skipped=True), rating(2, "car", hours=2, lead=12)), {"car": 0.7}),
        # 7: last week's bicycle
        TaskFacts(7, (rating(1, "bicycle", hours=-24 * 7, lead=50),), {"bicycle": 0.9}),
        # 8, 9: unlabeled: the pool holds 0.5 + 0.25 expected bicycles
        TaskFacts(8, (), {"bicycle": 0.5}),
        TaskFacts(9, (), {"bicycle": 0.25, "car": 0.75}),
    ]


def test_weekly_class_metrics_match_hand_computed_values() -> None:
    metrics = compute(scenario(), PLAN, NOW, weeks=3)
    bicycle, car = metrics.current("bicycle"), metrics.current("car")
    assert bicycle is not None and car is not None
    assert metrics.week == "2024-05-13" and metrics.weeks == [
        "2024-04-29",
        "2024-05-06",
        "2024-05-13",
    ]
    # counts: task 2 is unsettled, so it counts for every class any annotator chose
    assert (bicycle.count, bicycle.reviewed, bicycle.quota, bicycle.quota_met) == (2, 2, 3, False)
    assert (car.count, car.reviewed) == (5, 2)
    # reviewed items of the week: 1, 2, 3. Bicycle involved in 1 and 2, split on 2.
    assert (bicycle.involved, bicycle.disagreement) == (2, 0.5)
    # AC1 for bicycle on items 1 [2,0], 2 [1,1], 3 [0,2]: pa = 2/3, pi = 0.5, pe = 0.5 -> 1/3
    assert bicycle.ac1 == pytest.approx(1 / 3)
    # error (IPW): bicycle items 1 (right, pi 1) and 2 (unsettled: counts as wrong, pi 1)
    assert bicycle.error_rate == pytest.approx(0.5)
    # car items reviewed: 2 (wrong, pi 1) and 3 (right, pi 0.25): (1/1) / (1 + 4) = 0.2
    assert car.error_rate == pytest.approx(0.2)
    # median lead time: bicycle items 1 and 2 -> 10, 20, 30, 40 -> 25
    assert bicycle.lead_time == pytest.approx(25.0)
    # skip rate of car: ratings on car tasks 2, 3, 4, 5, 6 = 8 ratings, 1 skip
    assert car.skip_rate == pytest.approx(1 / 8)
    # expected bicycles a week: min(quota 3, 0.5 + 0.25 in the pool)
    assert bicycle.expected == pytest.approx(0.75)
    totals = metrics.totals[-1]
    assert (totals.count, totals.reviewed) == (6, 3)
    assert totals.lead_time == pytest.approx(10.0)  # median of 2 4 6 8 10 12 20 30 40
    assert totals.skip_rate == pytest.approx(1 / 10)
    assert metrics.awaiting_review == 1 and metrics.escalations_open == 1


def test_alarms_name_the_numbers_behind_them() -> None:
    metrics = compute(scenario(), PLAN, NOW, weeks=3)
    kinds = {(a.kind, a.subject) for a in metrics.alarms}
    assert ("quota_missed", "bicycle") in kinds  # last week: 1 of 3
    assert ("disagreement", "bicycle") in kinds  # 50 % of 2 reviewed, limit 30 %
    assert ("escalation_waiting", "2") in kinds  # open 30 h, limit 24 h
    quota = next(a for a in metrics.alarms if a.kind == "quota_missed")
    assert "1 of 3" in quota.message


def test_a_rare_class_with_no_items_for_two_weeks_raises_an_alarm_showing_the_expected_count() -> (
    None
):
    older = [TaskFacts(50, (rating(1, "car", hours=-24 * 21),), {"car": 0.9})]
    pool = [TaskFacts(60 + i, (), {"bicycle": 0.6}) for i in range(10)]
    metrics = compute(older + pool, PLAN, NOW, weeks=4)
    [zero] = [a for a in metrics.alarms if a.kind == "zero_items"]
    assert zero.subject == "bicycle" and zero.threshold == pytest.approx(3.0)
    assert "expected about 3 a week" in zero.message


def test_a_low_volume_class_does_not_cry_wolf() -> None:
    older = [TaskFacts(50, (rating(1, "car", hours=-24 * 21),), {"car": 0.9})]
    pool = [TaskFacts(60, (), {"bicycle": 0.3})]  # the pool holds 0.3 expected bicycles
    metrics = compute(older + pool, PLAN, NOW, weeks=4)
    assert not [a for a in metrics.alarms if a.kind == "zero_items"]


def test_a_new_project_raises_no_alarms_for_weeks_before_it_started() -> None:
    metrics = compute(scenario()[:6], PLAN, NOW, weeks=4)
    assert not [a for a in metrics.alarms if a.kind in ("zero_items", "quota_missed")]


def test_review_states_are_counted_per_tier() -> None:
    states = {
        (1, Tier.must_not_miss): SwitchState.tightened,
        (2, Tier.must_not_miss): SwitchState.normal,
        (1, Tier.nice_to_have): SwitchState.reduced,
    }
    metrics = compute(scenario(), PLAN, NOW, states=states)
    by_tier = {t.tier: (t.normal, t.tightened, t.reduced) for t in metrics.tiers}
    assert by_tier == {
        "must_not_miss": (1, 1, 0),
        "nice_to_have": (0, 0, 1),
        "experimental": (0, 0, 0),
    }


def test_a_class_nobody_chose_has_no_agreement_rather_than_a_perfect_one() -> None:
    metrics = compute(scenario()[:6], PLAN, NOW, weeks=1)
    assert metrics.current("bicycle") is not None
    only_cars = [t for t in scenario()[2:6]]
    car_week = compute(only_cars, PLAN, NOW, weeks=1).current("bicycle")
    assert car_week is not None and car_week.involved == 0 and car_week.ac1 is None
