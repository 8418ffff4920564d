"""The labelplan ML backend model: what label-studio-ml users expect, a class with predict and fit.

``LabelplanModel.predict`` scores a batch of tasks for Label Studio (a pre-annotation for the
project's class control and a calibrated score) and writes per-class probabilities,
near-duplicate groups and look-alikes to the store for the planner. ``fit`` pulls annotations
from Label Studio and retrains the classifier head (label-studio-ml 1.0.9 passes it no tasks).

An instance is cheap (it parses the label config); every request may build its own. All state
that matters lives in the store, so any number of workers and replicas answer alike.
"""

from __future__ import annotations

import logging
from typing import Any

from label_studio_ml.model import LabelStudioMLBase

from labelplan.labelstudio import LabelStudioClient, MediaUnavailable
from labelplan.store import Store, open_store
from labelplan_backend.extractors import (
    FeatureExtractor,
    ProjectShape,
    TaskInput,
    choose_extractor,
    project_shape,
)
from labelplan_backend.scoring import current_model, load_hints, prediction_result, score_tasks
from labelplan_backend.settings import BackendSettings
from labelplan_backend.training import TrainingUnavailable, client_for, media_reader, retrain

log = logging.getLogger(__name__)


def project_id_of(project: Any) -> int:
    """Label Studio sends ``"<id>.<created timestamp>"`` (or a dict with ``id`` in webhooks)."""
    if isinstance(project, dict):
        project = project.get("id")
    text = str(project or "").split(".", 1)[0]
    if not text.isdigit():
        raise ValueError(
            f"expected a Label Studio project id like '12.1700000000', got {project!r}"
        )
    return int(text)


class LabelplanModel(LabelStudioMLBase):
    """Scores tasks for labelplan's planner; see the module docstring."""

    def __init__(
        self,
        label_config: str | None = None,
        train_output: dict[str, Any] | None = None,
        *,
        settings: BackendSettings | None = None,
        store: Store | None = None,
        client: LabelStudioClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(label_config=label_config, train_output=train_output, **kwargs)
        self.settings = settings or BackendSettings.from_env()
        self.store = store or open_store(self.settings.store_url)
        self._client = client
        self.shape: ProjectShape = project_shape(self.parsed_label_config)

    @property
    def client(self) -> LabelStudioClient:
        if self._client is None:
            self._client = client_for(self.settings)
        return self._client

    def extractor(self) -> FeatureExtractor:
        return choose_extractor(self.shape, self.settings, self._media)

    def _media(self, url: str) -> bytes:
        """Images come through Label Studio's adapter (its auth, only to its own host)."""
        try:
            client = self.client
        except TrainingUnavailable as exc:
            raise MediaUnavailable(str(exc)) from exc
        return media_reader(client, self.settings)(url)

    def model_version(self, project_id: int) -> str:
        """The version in force, read from the store (no model is loaded: ``/setup`` is fast)."""
        record = self.store.latest_model(project_id)
        return record.version if record else f"{self.settings.version_prefix}.0"

    def predict(self, tasks: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
        """One entry per task, in order: ``[{"result", "score", "model_version"}]``, or ``[]``
        (no prediction) for a task that cannot be read — its reason is logged and stored."""
        project_id = project_id_of(kwargs.get("project"))
        extractor = self.extractor()
        hints = load_hints(self.settings.cold_start_file)
        model = current_model(
            self.store, project_id, self.shape, extractor, hints, self.settings.version_prefix
        )
        inputs = [
            TaskInput(
                task_id=int(task.get("id") or 0),
                data=task.get("data") if isinstance(task.get("data"), dict) else {},
                predictions=tuple(p for p in task.get("predictions") or [] if isinstance(p, dict)),
            )
            for task in tasks
        ]
        scored, fresh = score_tasks(self.store, project_id, self.shape, extractor, model, inputs)
        self.needs_rescore = fresh
        self.problems = {s.task_id: s.problem for s in scored if s.problem}
        results: list[Any] = []
        for outcome in scored:
            if outcome.problem:
                results.append([])
                continue
            results.append(
                {
                    "result": prediction_result(self.shape, outcome.probs),
                    "score": round(max(outcome.probs.values()), 6),
                    "model_version": model.version,
                }
            )
        self.version_used = model.version
        return results

    def fit(self, tasks: Any, workdir: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Retrain on the project's annotations, pulled from Label Studio (``tasks`` is ignored:
        label-studio-ml 1.0.9 always passes an empty list). Runs in the caller's thread; the
        web app queues it instead (see :mod:`labelplan_backend.jobs`)."""
        data = kwargs.get("data") or {}
        project_id = project_id_of(data.get("project") or kwargs.get("project"))
        version = retrain(project_id, self.settings, store=self.store, client=self.client)
        return {"model_version": version}
