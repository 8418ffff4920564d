"""Reviewers' verdicts from Label Studio Enterprise's review API, as opinions on a task.

Pure mapping (:func:`labelplan.sync.review_rating`) and the facts the review and the metrics
work on (:func:`labelplan.sync.review_facts`, over a temporary SQLite store).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from labelplan.labelstudio import review_from_json
from labelplan.metrics import compute
from labelplan.plan import parse_plan
from labelplan.review import Opinion, Status, defect, settle
from labelplan.store import AnnotationRow, ReviewRow, TaskRow, open_store
from labelplan.sync import review_facts, review_rating

PLAN = parse_plan(
    """
classes:
  bicycle: {tier: must_not_miss, labels: [Bicycle]}
  car: {tier: nice_to_have, easy: true, labels: [Car]}
review:
  escalation: {experts: [expert@example.com]}
"""
)
LABELS = PLAN.label_map()
AT = datetime(2024, 5, 7, 9, tzinfo=UTC)
ALICE, RITA, EXPERT = 2, 7, 9


def annotation(labels: tuple[str, ...], by: int = ALICE) -> AnnotationRow:
    return AnnotationRow(70, 5, by, labels, 4.0, False, AT, AT)


def review(accepted: bool, labels: tuple[str, ...] | None = None, by: int = RITA) -> ReviewRow:
    return ReviewRow(1, 70, 5, by, accepted, labels, AT + timedelta(hours=1))


def test_accepting_agrees_and_rejecting_disagrees() -> None:
    car = annotation(("Car",))
    accepted = review_rating(review(True), car, LABELS, set(), AT)
    assert accepted is not None and accepted.classes == {"car"} and accepted.review
    assert accepted.annotator == RITA and accepted.lead_time is None and not accepted.skipped
    corrected = review_rating(review(False, ("Bicycle",)), car, LABELS, set(), AT)
    assert corrected is not None and corrected.classes == {"bicycle"}
    bare = review_rating(review(False), car, LABELS, set(), AT)
    assert bare is not None and bare.classes == frozenset()
    # corrected in place: the annotation already holds the reviewer's labels, the original is lost
    fixed_in_place = review_rating(review(False, ("Car",)), car, LABELS, set(), AT)
    assert fixed_in_place is not None and fixed_in_place.classes == frozenset()


def test_accepting_with_a_changed_result_is_a_correction() -> None:
    car = annotation(("Car",))
    fixed = review_rating(review(True, ("Bicycle",)), car, LABELS, set(), AT)
    same = review_rating(review(True, ("Car",)), car, LABELS, set(), AT)
    assert fixed is not None and fixed.classes == {"bicycle"}
    assert same is not None and same.classes == {"car"}


def test_no_opinion_from_the_author_or_of_an_unknown_annotation() -> None:
    car = annotation(("Car",))
    assert review_rating(review(True, by=ALICE), car, LABELS, set(), AT) is None
    assert review_rating(review(True), None, LABELS, set(), AT) is None
    assert review_rating(ReviewRow(1, 70, 5, None, True, None, AT), car, LABELS, set(), AT) is None


def test_an_experts_bare_rejection_decides_nothing_but_a_correction_does() -> None:
    bike = annotation(("Bicycle",))
    bare = review_rating(review(False, by=EXPERT), bike, LABELS, {EXPERT}, AT)
    fixed = review_rating(review(False, ("Car",), by=EXPERT), bike, LABELS, {EXPERT}, AT)
    assert bare is not None and not bare.expert
    assert fixed is not None and fixed.expert
    first = Opinion(ALICE, frozenset({"bicycle"}), AT)
    as_opinion = [first, Opinion(EXPERT, bare.classes, bare.at, bare.expert)]
    unsettled = settle(as_opinion, PLAN, rare=True)
    assert unsettled.status is Status.escalated and defect(first, unsettled) is True
    decided = settle([first, Opinion(EXPERT, fixed.classes, fixed.at, True)], PLAN, rare=True)
    assert decided.status is Status.settled_by_expert and decided.answer == {"car"}


def test_review_facts_carry_reviews_and_metrics_count_them_as_review_not_labeling(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path / "s.sqlite3"))
    try:
        store.upsert_tasks(1, [TaskRow(5, {"text": "x"}, AT, AT, True, 1), TaskRow(6, {}, AT, AT)])
        store.upsert_annotations(
            1,
            [
                AnnotationRow(70, 5, ALICE, ("Car",), 4.0, False, AT, AT),
                AnnotationRow(71, 6, ALICE, ("Car",), 6.0, False, AT, AT),
            ],
        )
        store.replace_reviews(
            1,
            [
                ReviewRow(1, 70, 5, RITA, True, None, AT + timedelta(hours=1)),
                ReviewRow(2, 71, 6, RITA, False, ("Bicycle",), AT + timedelta(hours=1)),
            ],
        )
        facts = {f.task_id: f for f in review_facts(store, 1, PLAN, set(), AT)}
    finally:
        store.close()
    assert [r.classes for r in facts[5].ratings] == [{"car"}, {"car"}]
    assert [r.classes for r in facts[6].ratings] == [{"car"}, {"bicycle"}]
    metrics = compute(list(facts.values()), PLAN, AT + timedelta(hours=2))
    car = metrics.current("car")
    assert car is not None
    # task 6 is disputed (unsettled): it counts for every class its opinions name
    assert (car.count, car.reviewed, car.disagreement) == (2, 2, 0.5)
    bicycle = metrics.current("bicycle")
    assert bicycle is not None and (bicycle.count, bicycle.reviewed) == (1, 1)
    assert car.lead_time == 5.0  # median of 4 s and 6 s: the reviews add no time-to-label
    week = next(t for t in metrics.totals if t.week == metrics.week)
    assert week.skip_rate == 0.0 and week.lead_time == 5.0


def test_a_review_is_read_as_the_sdk_type_describes_it() -> None:
    raw = {
        "id": 3,
        "annotation": 70,
        "accepted": False,
        "created_by": 7,
        "created_at": "2024-05-07T10:00:00Z",
        "result": [{"type": "choices", "value": {"choices": ["Car"]}, "from_name": "label"}],
    }
    got = review_from_json(raw)
    assert got is not None
    assert (got.id, got.annotation_id, got.reviewer, got.accepted, got.labels) == (
        3,
        70,
        7,
        False,
        ("Car",),
    )
    assert got.created_at == datetime(2024, 5, 7, 10, tzinfo=UTC)
    assert review_from_json({**raw, "accepted": None}) is None  # no verdict yet
    assert review_from_json({**raw, "result": None}).labels is None  # type: ignore[union-attr]
