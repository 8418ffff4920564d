"""Training: pull annotations from Label Studio, refit the head, re-score the project.

label-studio-ml 1.0.9 hands ``fit()`` an empty task list, so the backend pulls what changed
itself (through the adapter, since a cursor kept in the store). One trainer per project runs at
a time across all workers and replicas (the store's training lock); a new model version is
written only when the labels changed, so repeated webhooks cost a pull and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from label_studio_tools.core.label_config import parse_config

from labelplan.labelstudio import LabelStudioClient, Task, labels_of
from labelplan.settings import LabelStudioSettings
from labelplan.store import AnnotationRow, ModelRecord, Store, open_store
from labelplan_backend.extractors import ProjectShape, TaskInput, choose_extractor, project_shape
from labelplan_backend.head import train_head
from labelplan_backend.scoring import (
    CurrentModel,
    current_model,
    ensure_features,
    head_signature,
    load_hints,
    next_version,
    rescore_project,
)
from labelplan_backend.settings import BackendSettings

log = logging.getLogger(__name__)

CURSOR = "backend.tasks_updated_since"


class TrainingUnavailable(RuntimeError):
    """Training needs Label Studio (to pull annotations) and it is not configured."""


def client_for(settings: BackendSettings) -> LabelStudioClient:
    if not settings.label_studio_url or not settings.label_studio_api_key:
        raise TrainingUnavailable(
            "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY for the backend: it pulls annotations "
            "and images from Label Studio itself"
        )
    return LabelStudioClient(
        LabelStudioSettings(settings.label_studio_url, settings.label_studio_api_key).url,
        settings.label_studio_api_key,
        timeout=settings.media_timeout * 3,
        retry_seconds=30,
    )


def media_reader(client: LabelStudioClient, settings: BackendSettings) -> Any:
    def read(url: str) -> bytes:
        return client.read_media(
            url, max_bytes=settings.max_media_bytes, timeout=settings.media_timeout
        )

    return read


def task_labels(annotations: Iterable[AnnotationRow], shape: ProjectShape) -> dict[int, str]:
    """Each labeled task's class: the label most annotators chose in the class control (a tie
    goes to the latest annotation); skipped annotations and other controls' labels ignored."""
    votes: dict[int, Counter[str]] = {}
    latest: dict[int, str] = {}
    for row in sorted(annotations, key=lambda r: r.annotation_id):
        if row.was_cancelled:
            continue
        chosen = [label for label in row.labels if label in shape.labels]
        if not chosen:
            continue
        votes.setdefault(row.task_id, Counter())[chosen[0]] += 1
        latest[row.task_id] = chosen[0]
    out: dict[int, str] = {}
    for task_id, counter in votes.items():
        top = max(counter.values())
        leaders = {label for label, n in counter.items() if n == top}
        out[task_id] = latest[task_id] if latest[task_id] in leaders else sorted(leaders)[0]
    return out


def annotation_rows(task: Task) -> list[AnnotationRow]:
    return [
        AnnotationRow(
            annotation_id=a.id,
            task_id=task.id,
            completed_by=a.completed_by,
            labels=labels_of(a.result),
            lead_time=a.lead_time,
            was_cancelled=a.was_cancelled,
            created_at=a.created_at,
            updated_at=a.updated_at,
        )
        for a in task.annotations
    ]


def labels_fingerprint(labels: Mapping[int, str], signature: Mapping[str, Any]) -> str:
    text = json.dumps([sorted(labels.items()), signature], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def retrain(
    project_id: int,
    settings: BackendSettings,
    *,
    full: bool = False,
    store: Store | None = None,
    client: LabelStudioClient | None = None,
) -> str:
    """Pull changes, extract missing features, refit if the labels changed, re-score everything.

    Returns the model version in force afterwards. ``full`` re-reads every task (after
    annotations were deleted, which Label Studio does not mark on the task).
    """
    store = store or open_store(settings.store_url)
    client = client or client_for(settings)
    with store.training_lock(project_id):
        project = client.read_project(project_id)
        shape = project_shape(parse_config(project.label_config))
        extractor = choose_extractor(shape, settings, media_reader(client, settings))
        since_text = None if full else store.cursor(project_id, CURSOR)
        since = datetime.fromisoformat(since_text) if since_text else None
        started = datetime.now(UTC)
        changed = list(client.iter_tasks(project_id, updated_since=since))
        for task in changed:
            store.replace_task_annotations(project_id, task.id, annotation_rows(task))
        ensure_features(
            store,
            project_id,
            extractor,
            [TaskInput(t.id, t.data, tuple(_prediction_json(t))) for t in changed],
        )
        store.set_cursor(project_id, CURSOR, started.isoformat())

        hints = load_hints(settings.cold_start_file)
        model = current_model(store, project_id, shape, extractor, hints, settings.version_prefix)
        labels = task_labels(store.annotations(project_id), shape)
        signature = head_signature(shape, extractor)
        fingerprint = labels_fingerprint(labels, signature)
        record = store.latest_model(project_id)
        if labels and (record is None or record.meta.get("labels_hash") != fingerprint):
            model = _fit(store, project_id, shape, extractor, model, labels, signature, fingerprint)
        scored = rescore_project(store, project_id, shape, extractor, model, labels)
        store.audit(
            project_id,
            "backend.retrain",
            {
                "version": model.version,
                "changed_tasks": len(changed),
                "scored": scored,
                "labeled": len(labels),
            },
        )
        log.info(
            "project %d: model %s, %d changed tasks pulled, %d labeled, %d scored",
            project_id,
            model.version,
            len(changed),
            len(labels),
            scored,
        )
        return model.version


def _fit(
    store: Store,
    project_id: int,
    shape: ProjectShape,
    extractor: Any,
    model: CurrentModel,
    labels: Mapping[int, str],
    signature: Mapping[str, Any],
    fingerprint: str,
) -> CurrentModel:
    features = store.features(project_id, extractor.name, sorted(labels))
    if not len(features.task_ids):
        return model
    y = [labels[int(t)] for t in features.task_ids]
    head = train_head(model.head, features.matrix, y)
    record = store.latest_model(project_id)
    version = next_version(record.version if record else None, model.version.rsplit(".", 1)[0])
    counts = Counter(y)
    store.put_model(
        project_id,
        ModelRecord(
            version,
            head.to_bytes(),
            {
                **signature,
                "kind": "logistic-regression",
                "labels_hash": fingerprint,
                "trained_on": len(y),
                "class_counts": dict(counts),
                "temperature": head.temperature,
            },
        ),
    )
    return CurrentModel(version, head)


def _prediction_json(task: Task) -> list[dict[str, Any]]:
    return [
        {"model_version": p.model_version, "score": p.score, "result": p.result}
        for p in task.predictions
    ]


def retrain_job(project_id: int, full: bool = False) -> str:
    """The RQ entry point: settings from the worker's environment."""
    return retrain(project_id, BackendSettings.from_env(), full=full)
