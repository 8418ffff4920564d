"""Feature extractors: one small interface, one class per kind of data.

An extractor turns tasks into fixed-length vectors (what the classifier head and the look-alike
search work on) and a near-duplicate key (what the planner caps per group). Adding a kind of
data means adding one class here; the scoring loop never changes. Which one a project gets is
decided by :func:`choose_extractor` from the label config and the settings.

A task the extractor cannot read (missing data key, unreadable image, unreachable URL) yields an
:class:`Extraction` with a ``problem`` instead of raising: one bad task never fails a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from labelplan.labelstudio import labels_of

log = logging.getLogger(__name__)

TEXT_TAGS = ("Text", "HyperText", "Paragraphs")
IMAGE_TAGS = ("Image",)


class UnsupportedProject(ValueError):
    """The project's label config gives the backend nothing it can score."""


@dataclass(frozen=True)
class TaskInput:
    """What an extractor sees of a task: its id and its data."""

    task_id: int
    data: dict[str, Any]
    predictions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Extraction:
    """One task's features, or why there are none."""

    vector: np.ndarray | None = None
    dup_key: str | None = None
    problem: str | None = None

    @classmethod
    def failed(cls, problem: str) -> Extraction:
        return cls(problem=problem)


class FeatureExtractor(Protocol):
    """Turns tasks into vectors. ``name`` keys the cache in the store, so it names the model too."""

    name: str
    data_key: str

    def extract(self, tasks: Sequence[TaskInput]) -> list[Extraction]:
        """One :class:`Extraction` per task, in order; never raises for one bad task."""
        ...


@dataclass(frozen=True)
class ProjectShape:
    """What the backend needs from a label config: the class control and the data it reads."""

    control: str
    control_tag: str
    to_name: str
    labels: tuple[str, ...]
    object_tag: str
    data_key: str

    @property
    def is_text(self) -> bool:
        return self.object_tag in TEXT_TAGS

    @property
    def is_image(self) -> bool:
        return self.object_tag in IMAGE_TAGS


def project_shape(parsed_config: dict[str, Any]) -> ProjectShape:
    """The classification control of a config parsed by label-studio-ml (``parsed_label_config``).

    The first ``Choices``/``Taxonomy`` control wins (a task-level class, what the planner counts);
    otherwise the first ``*Labels`` control, whose labels the backend then predicts per task.
    """
    controls = [
        (name, spec)
        for name, spec in parsed_config.items()
        if spec.get("labels")
        and (spec["type"] in ("Choices", "Taxonomy") or spec["type"].endswith("Labels"))
    ]
    controls.sort(key=lambda item: item[1]["type"] not in ("Choices", "Taxonomy"))
    for name, spec in controls:
        inputs = spec.get("inputs") or []
        if not inputs:
            continue
        value = str(inputs[0].get("value", ""))
        return ProjectShape(
            control=name,
            control_tag=spec["type"],
            to_name=(spec.get("to_name") or [""])[0],
            labels=tuple(str(label) for label in spec["labels"]),
            object_tag=str(inputs[0].get("type", "")),
            data_key=value.lstrip("$"),
        )
    raise UnsupportedProject(
        "the label config has no Choices, Taxonomy or *Labels control with labels bound to a data "
        'object: add e.g. <Choices name="label" toName="text"> with <Choice value="..."/> entries'
    )


class CustomerPredictions:
    """Bring your own model, already in Label Studio: its predictions become the features.

    The vector is the customer's score per label (in the project's label order) for the
    configured model version: the head then learns how far to trust it. No dup key: their model
    says nothing about near-duplicates.
    """

    def __init__(self, model_version: str, labels: Sequence[str], data_key: str) -> None:
        self.model_version = model_version
        self.labels = tuple(labels)
        self.data_key = data_key
        self.name = f"customer:{model_version}"

    def extract(self, tasks: Sequence[TaskInput]) -> list[Extraction]:
        return [self._one(task) for task in tasks]

    def _one(self, task: TaskInput) -> Extraction:
        mine = [p for p in task.predictions if p.get("model_version") == self.model_version]
        if not mine:
            return Extraction.failed(
                f"task {task.task_id} has no prediction of model version {self.model_version!r}"
            )
        vector = np.zeros(len(self.labels), dtype=np.float32)
        for prediction in mine:
            score = prediction.get("score")
            weight = float(score) if isinstance(score, int | float) else 1.0
            for label in labels_of(prediction.get("result") or []):
                if label in self.labels:
                    index = self.labels.index(label)
                    vector[index] = max(vector[index], weight)
        return Extraction(vector=vector)


def choose_extractor(shape: ProjectShape, settings: Any, media: Any) -> FeatureExtractor:
    """The extractor for a project: the customer's model when configured, else by data type.

    ``media`` reads an image URL into bytes (through the Label Studio adapter, with the right
    auth). Heavy models are imported here, lazily, so ``/health`` and ``/setup`` stay fast.
    """
    if settings.customer_model_version:
        return CustomerPredictions(settings.customer_model_version, shape.labels, shape.data_key)
    if settings.onnx_model is not None:
        if not shape.is_image:
            raise UnsupportedProject(
                f"LABELPLAN_ONNX_MODEL takes images, but control {shape.control!r} labels a "
                f"<{shape.object_tag}>: unset it for this backend"
            )
        from labelplan_backend.images import OnnxImageModel

        return OnnxImageModel(settings.onnx_model, shape.data_key, media)
    if shape.is_text:
        from labelplan_backend.text import MiniLM

        return MiniLM.shared(shape.data_key)
    if shape.is_image:
        from labelplan_backend.images import EfficientNetLite0

        return EfficientNetLite0.shared(shape.data_key, media)
    raise UnsupportedProject(
        f"control {shape.control!r} labels a <{shape.object_tag}>; the backend reads Text, "
        "HyperText, Paragraphs and Image. For other data, point LABELPLAN_CUSTOMER_MODEL_VERSION "
        "at your own model's predictions in Label Studio"
    )
