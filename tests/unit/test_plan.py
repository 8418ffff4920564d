"""The plan file: tier defaults, validation messages a person can act on, the JSON Schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelplan.plan import PlanError, Tier, load_plan, parse_plan, plan_schema

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan.yaml"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(text)
    return {problem.path: str(problem) for problem in caught.value.problems}


def test_the_shipped_example_plan_validates() -> None:
    plan = load_plan(EXAMPLE)
    assert plan.easy() == ["car", "person"]
    assert set(plan.must_not_miss()) == {"bicycle", "motorcycle", "stop_sign", "traffic_light"}


def test_a_minimal_plan_gets_its_defaults_from_the_tiers() -> None:
    plan = parse_plan(
        "classes: {bicycle: {tier: must_not_miss}, dog: {tier: experimental},"
        " car: {tier: nice_to_have, easy: true}}"
    )
    bicycle, dog, car = plan.classes["bicycle"], plan.classes["dog"], plan.classes["car"]
    assert (bicycle.quota, bicycle.hard_negatives, bicycle.claim_weight) == (50, 0.05, 4.0)
    assert (dog.quota, dog.hard_negatives, dog.claim_weight) == (5, 0.0, 1.0)
    assert (car.quota, car.hard_negatives) == (0, 0.0)
    assert plan.week.start.value == "monday" and plan.week.timezone == "UTC"
    assert plan.preannotations is True


def test_explicit_values_override_tier_defaults() -> None:
    plan = parse_plan("classes: {bicycle: {tier: must_not_miss, weekly_min: 7, weight: 9}}")
    assert plan.classes["bicycle"].quota == 7
    assert plan.classes["bicycle"].claim_weight == 9


def test_a_wrong_enum_value_names_the_path_the_value_and_the_allowed_values() -> None:
    found = problems("classes: {bicycle: {tier: must-not-miss}}")
    message = found["classes.bicycle.tier"]
    assert "'must-not-miss'" in message
    assert all(tier.value in message for tier in Tier)


def test_an_unknown_key_lists_the_keys_that_section_accepts() -> None:
    found = problems("classes: {bicycle: {tier: must_not_miss, quota: 5}}")
    message = found["classes.bicycle.quota"]
    assert "weekly_min" in message and "hard_negative_share" in message


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        "classes: {bicycle: {tier: must_not_miss, weekly_min: -1}}\n"
        "discovery_reserve: 1.5\n"
        "week: {start: mon, timezone: Mars/Olympus}\n"
    )
    assert set(found) == {
        "classes.bicycle.weekly_min",
        "discovery_reserve",
        "week.start",
        "week.timezone",
    }
    assert "allowed: a number >= 0" in found["classes.bicycle.weekly_min"]
    assert "allowed: a number < 1" in found["discovery_reserve"]
    assert "IANA" in found["week.timezone"]


def test_a_label_studio_value_may_mean_one_class_only() -> None:
    found = problems(
        "classes: {bike: {tier: must_not_miss, labels: [Bicycle]},"
        " bicycle: {tier: nice_to_have, labels: [Bicycle]}}"
    )
    assert "maps to both 'bike' and 'bicycle'" in found[""]


def test_reserved_shares_must_leave_room_for_quotas() -> None:
    found = problems(
        "classes: {bicycle: {tier: must_not_miss, hard_negative_share: 0.5}}\n"
        "discovery_reserve: 0.45\n"
    )
    assert "at most 0.9" in found[""]


def test_must_not_miss_classes_cannot_be_easy() -> None:
    found = problems("classes: {bicycle: {tier: must_not_miss, easy: true}}")
    assert "cannot be easy" in found["classes.bicycle"]


def test_an_easy_class_has_no_quota() -> None:
    found = problems("classes: {car: {tier: nice_to_have, easy: true, weekly_min: 4}}")
    assert "remove weekly_min" in found["classes.car"]


def test_a_plan_without_classes_is_rejected() -> None:
    found = problems("seed: 3")
    assert "classes" in found


def test_broken_yaml_says_where() -> None:
    found = problems("classes: {bicycle: [\n")
    assert "line" in found[""]


def test_a_missing_file_is_a_plan_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "absent.yaml")


def test_the_schema_describes_classes_tiers_and_forbids_unknown_keys() -> None:
    schema = plan_schema()
    assert "classes" in schema["required"]
    assert schema["additionalProperties"] is False
    assert set(schema["$defs"]["Tier"]["enum"]) == {t.value for t in Tier}


# ---------------------------------------------------------------- review


def test_a_plan_without_a_review_section_does_no_review() -> None:
    plan = parse_plan("classes: {bicycle: {tier: must_not_miss}}")
    assert plan.review.enabled is False


def test_writing_a_review_section_turns_review_on_with_tier_defaults() -> None:
    plan = parse_plan(
        "classes: {bicycle: {tier: must_not_miss}, bus: {tier: nice_to_have}}\nreview: {}"
    )
    assert plan.review.enabled is True
    assert (plan.review_rate("bicycle"), plan.review_rate("bus")) == (0.3, 0.1)
    assert plan.review.switching.window == 5 and plan.review.switching.tighten_after == 2


def test_a_class_review_rate_overrides_its_tier() -> None:
    plan = parse_plan("classes: {bicycle: {tier: must_not_miss, review_rate: 0.8}}\nreview: {}")
    assert plan.review_rate("bicycle") == 0.8


def test_a_critical_class_may_not_be_reviewed_less_than_a_lower_tier() -> None:
    found = problems(
        "classes: {bicycle: {tier: must_not_miss, review_rate: 0.02}}\n"
        "review: {rates: {nice_to_have: 0.1, experimental: 0.05}}"
    )
    assert "below the 0.1 of a less critical tier" in found[""]


def test_tier_review_rates_must_not_grow_as_tiers_get_less_critical() -> None:
    found = problems(
        "classes: {bicycle: {tier: must_not_miss}}\n"
        "review: {rates: {must_not_miss: 0.1, nice_to_have: 0.3}}"
    )
    assert "review.rates" in found and "must_not_miss >= nice_to_have" in found["review.rates"]


def test_review_typos_name_the_allowed_keys() -> None:
    found = problems(
        "classes: {bicycle: {tier: must_not_miss}}\nreview: {escalation: {expert: [a@b.c]}}"
    )
    assert "experts" in found["review.escalation.expert"]
