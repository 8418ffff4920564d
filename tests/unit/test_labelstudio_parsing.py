"""Pure parts of the Label Studio adapter: parsing and the checks made before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labelplan.labelstudio import (
    LabelStudioError,
    NewPrediction,
    NoClassControl,
    choices_result,
    parse_taxonomy,
    score_problem,
    task_from_json,
)

TEXT_CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text"><Choice value="cat"/><Choice value="dog"/></Choices>
</View>
"""


def test_taxonomy_maps_each_class_control_to_its_labels() -> None:
    taxonomy = parse_taxonomy(TEXT_CONFIG)
    assert list(taxonomy.controls) == ["label"]
    assert taxonomy.controls["label"].labels == ("cat", "dog")
    assert taxonomy.data_keys == ("text",)
    assert taxonomy.to_dict()["controls"]["label"] == {
        "tag": "Choices",
        "to_name": ["text"],
        "labels": ["cat", "dog"],
    }


def test_labels_controls_count_as_classes_and_free_text_does_not() -> None:
    config = """
    <View>
      <Image name="img" value="$image"/>
      <PolygonLabels name="poly" toName="img"><Label value="road"/></PolygonLabels>
      <TextArea name="note" toName="img"/>
    </View>
    """
    taxonomy = parse_taxonomy(config)
    assert list(taxonomy.controls) == ["poly"]
    assert taxonomy.labels == ("road",)


def test_config_without_classes_names_what_it_found_and_what_to_add() -> None:
    config = '<View><Text name="t" value="$t"/><TextArea name="note" toName="t"/></View>'
    with pytest.raises(NoClassControl) as caught:
        parse_taxonomy(config, project_id=7)
    message = str(caught.value)
    assert "project 7's label config" in message
    assert "<TextArea name='note'>" in message
    assert "<Choices" in message


def test_broken_xml_is_a_clear_error() -> None:
    with pytest.raises(NoClassControl, match="could not be parsed"):
        parse_taxonomy("<View><Text name=")


@given(st.floats(min_value=0.0, max_value=1.0))
def test_every_score_in_the_unit_interval_is_accepted(score: float) -> None:
    assert NewPrediction(task_id=1, score=score, model_version="v").problem() is None


@given(
    st.one_of(
        st.floats(max_value=-1e-12),
        st.floats(min_value=1.0 + 1e-12),
        st.just(float("nan")),
        st.just(float("inf")),
    )
)
def test_scores_outside_the_unit_interval_are_refused(score: float) -> None:
    assert score_problem(score) is not None
    assert NewPrediction(task_id=1, score=score, model_version="v").problem() is not None


@pytest.mark.parametrize(
    ("prediction", "why"),
    [
        (NewPrediction(task_id=0, score=0.5, model_version="v"), "task id"),
        (NewPrediction(task_id=True, score=0.5, model_version="v"), "task id"),
        (NewPrediction(task_id=3, score=0.5, model_version=""), "model_version"),
        (NewPrediction(task_id=3, score="0.5", model_version="v"), "number"),  # type: ignore[arg-type]
    ],
)
def test_malformed_predictions_say_what_is_wrong(prediction: NewPrediction, why: str) -> None:
    problem = prediction.problem()
    assert problem is not None and why in problem


def test_task_json_becomes_typed_values() -> None:
    raw = {
        "id": 12,
        "data": {"text": "hello", "camera": "north"},
        "meta": {},
        "created_at": "2026-11-30T10:00:00.123456Z",
        "updated_at": "2026-12-01T08:30:00Z",
        "is_labeled": True,
        "overlap": 1,
        "annotations": [
            {
                "id": 5,
                "completed_by": 3,
                "result": [{"value": {"choices": ["cat"]}}],
                "lead_time": 7.25,
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-12-01T08:30:00Z",
                "updated_at": "2026-12-01T08:30:00Z",
            },
            {"id": 6, "completed_by": {"id": 4, "email": "x@y"}, "was_cancelled": True},
        ],
        "predictions": [{"id": 9, "model_version": "q", "score": 0.4, "result": []}],
    }
    task = task_from_json(raw)
    assert task.id == 12
    assert task.created_at == datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
    assert [a.completed_by for a in task.annotations] == [3, 4]
    assert task.annotations[0].lead_time == 7.25
    assert task.annotations[1].was_cancelled
    assert (task.total_annotations, task.cancelled_annotations) == (1, 1)
    assert task.predictions[0].task_id == 12
    assert task.predictions[0].score == 0.4


def test_choices_result_refuses_labels_the_control_does_not_have() -> None:
    control = parse_taxonomy(TEXT_CONFIG).controls["label"]
    assert choices_result(control, ["dog"]) == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["dog"]}}
    ]
    with pytest.raises(LabelStudioError, match="allowed: cat, dog"):
        choices_result(control, ["bicycle"])


def test_labels_of_reads_choices_region_labels_and_taxonomy_leaves() -> None:
    from labelplan.labelstudio import labels_of

    result = [
        {"value": {"choices": ["cat", "dog"]}},
        {"value": {"x": 1, "rectanglelabels": ["bicycle"]}},
        {"value": {"taxonomy": [["animal", "bird"]]}},
        {"value": {"text": ["free text is not a label"]}},
        {"value": {"choices": ["cat"]}},
        "garbage",
    ]
    assert labels_of(result) == ("cat", "dog", "bicycle", "bird")
