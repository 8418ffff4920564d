"""Scoring: features (cached in the store) → class probabilities → Label Studio predictions.

Used by ``/predict`` (a batch of tasks) and by training (the whole project). Everything that
several workers must agree on comes from the store: cached features, the current model version
and its head. The only per-process memory is a cache of decoded heads keyed by that version, so
a worker can never serve a version the store does not hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelplan.labelstudio import Control, choices_result
from labelplan.store import FeatureRow, Features, LookalikeRow, ModelRecord, ScoreRow, Store
from labelplan_backend.duplicates import near_duplicate_groups
from labelplan_backend.extractors import (
    Extraction,
    FeatureExtractor,
    ProjectShape,
    TaskInput,
)
from labelplan_backend.head import Head, cold_start_head
from labelplan_backend.lookalikes import look_alikes

log = logging.getLogger(__name__)

EXTRACT_BATCH = 64


@dataclass(frozen=True)
class ScoredTask:
    """One task's outcome: class probabilities, or the reason it got an empty prediction."""

    task_id: int
    probs: dict[str, float] = field(default_factory=dict)
    problem: str | None = None


@dataclass(frozen=True)
class CurrentModel:
    version: str
    head: Head


def initial_version(prefix: str) -> str:
    return f"{prefix}.0"


def next_version(current: str | None, prefix: str) -> str:
    """``prefix.N+1`` after ``prefix.N`` (versions only grow, so Label Studio re-asks)."""
    if not current:
        return f"{prefix}.1"
    tail = current.rsplit(".", 1)[-1]
    return f"{prefix}.{int(tail) + 1 if tail.isdigit() else 1}"


def head_signature(shape: ProjectShape, extractor: FeatureExtractor) -> dict[str, Any]:
    """What a stored head must match to be used: the control, its classes and the features."""
    return {"control": shape.control, "classes": list(shape.labels), "extractor": extractor.name}


# --------------------------------------------------------------------------- cold start


def load_hints(path: Any) -> dict[str, dict[str, Any]]:
    """Class hints for the cold start from ``MODEL_DIR/cold_start.json`` (missing file: none).

    Format: ``{"classes": {"<label>": {"description": "...", "examples": ["text or image URL"]}}}``.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); fix it or remove it (it is optional)"
        ) from exc
    classes = raw.get("classes", {}) if isinstance(raw, dict) else {}
    return {str(k): v for k, v in classes.items() if isinstance(v, dict)}


def build_cold_head(
    shape: ProjectShape, extractor: FeatureExtractor, hints: Mapping[str, Mapping[str, Any]]
) -> Head:
    """Prototypes from class names (text only), descriptions and examples; see :mod:`head`."""
    prototypes: dict[str, np.ndarray] = {}
    for label in shape.labels:
        hint = hints.get(label, {})
        values: list[str] = []
        if shape.is_text:
            values.append(label)
            if hint.get("description"):
                values.append(str(hint["description"]))
        values.extend(str(e) for e in hint.get("examples", []) if e)
        if not values:
            continue
        extractions = extractor.extract(
            [TaskInput(task_id=0, data={extractor.data_key: v}) for v in values]
        )
        vectors = [e.vector for e in extractions if e.vector is not None]
        for e in extractions:
            if e.problem:
                log.warning("cold-start example for class %r skipped: %s", label, e.problem)
        if vectors:
            prototypes[label] = np.stack(vectors)
    return cold_start_head(shape.labels, prototypes)


# --------------------------------------------------------------------------- the current model

_heads: dict[tuple[int, str], Head] = {}
_heads_lock = threading.Lock()


def current_model(
    store: Store,
    project_id: int,
    shape: ProjectShape,
    extractor: FeatureExtractor,
    hints: Mapping[str, Mapping[str, Any]],
    prefix: str,
) -> CurrentModel:
    """The store's newest head for this project, or a cold-start head stored as ``prefix.0``.

    A head trained for another control, class list or extractor (the label config changed) is
    not used; the cold start takes over until the next training.
    """
    record = store.latest_model(project_id)
    signature = head_signature(shape, extractor)
    if record is not None and all(record.meta.get(k) == v for k, v in signature.items()):
        return CurrentModel(record.version, _decoded(project_id, record))
    cold = build_cold_head(shape, extractor, hints)
    version = initial_version(prefix)
    if record is None:
        fingerprint = hashlib.sha256(cold.to_bytes()).hexdigest()[:16]
        store.put_model(
            project_id,
            ModelRecord(
                version, cold.to_bytes(), {**signature, "kind": "cold-start", "hash": fingerprint}
            ),
        )
    return CurrentModel(version, cold)


def _decoded(project_id: int, record: ModelRecord) -> Head:
    key = (project_id, record.version)
    with _heads_lock:
        head = _heads.get(key)
        if head is None:
            head = Head.from_bytes(record.blob)
            _heads[key] = head
        return head


# --------------------------------------------------------------------------- features


def ensure_features(
    store: Store, project_id: int, extractor: FeatureExtractor, tasks: Sequence[TaskInput]
) -> tuple[Features, dict[int, str]]:
    """Cached features for ``tasks`` (computing and storing the missing ones) and the problems.

    Returns the features in ``tasks`` order (tasks with a problem left out) and task id ->
    reason for the tasks that could not be read.
    """
    ids = [t.task_id for t in tasks]
    cached = store.features(project_id, extractor.name, ids)
    have = {int(t) for t in cached.task_ids}
    missing = [t for t in tasks if t.task_id not in have]
    problems: dict[int, str] = {}
    rows: list[FeatureRow] = []
    for start in range(0, len(missing), EXTRACT_BATCH):
        batch = missing[start : start + EXTRACT_BATCH]
        for task, extraction in zip(batch, _extract(extractor, batch), strict=True):
            if extraction.vector is None:
                problems[task.task_id] = extraction.problem or "no features"
            else:
                rows.append(FeatureRow(task.task_id, extraction.vector, extraction.dup_key))
    if rows:
        store.put_features(project_id, extractor.name, rows)
    if problems:
        for task_id, reason in problems.items():
            log.warning(
                "project %d task %d gets an empty prediction: %s", project_id, task_id, reason
            )
        store.set_task_problems(
            project_id, dict(problems), {t.task_id: t.data for t in tasks if t.task_id in problems}
        )
    if not rows:
        return cached, problems
    return store.features(project_id, extractor.name, ids), problems


def _extract(extractor: FeatureExtractor, batch: Sequence[TaskInput]) -> list[Extraction]:
    """The extractor's output, or one problem for the whole batch if the extractor itself broke."""
    try:
        out = extractor.extract(batch)
    except Exception as exc:  # a model bug must not fail Label Studio's whole request
        log.exception("extractor %s failed on a batch of %d", extractor.name, len(batch))
        return [Extraction.failed(f"{extractor.name} failed: {type(exc).__name__}: {exc}")] * len(
            batch
        )
    if len(out) != len(batch):
        return [Extraction.failed(f"{extractor.name} returned {len(out)} of {len(batch)}")] * len(
            batch
        )
    return out


# --------------------------------------------------------------------------- predictions


def prediction_result(shape: ProjectShape, probs: Mapping[str, float]) -> list[dict[str, Any]]:
    """The pre-annotation: the most likely class in a Choices/Taxonomy control (none for regions)."""
    if shape.control_tag not in ("Choices", "Taxonomy") or not probs:
        return []
    best = max(shape.labels, key=lambda label: probs.get(label, 0.0))
    control = Control(shape.control, shape.control_tag, (shape.to_name,), shape.labels)
    result = choices_result(control, [best])
    if shape.control_tag == "Taxonomy":
        result[0]["value"] = {"taxonomy": [[best]]}
    return result


def score_tasks(
    store: Store,
    project_id: int,
    shape: ProjectShape,
    extractor: FeatureExtractor,
    model: CurrentModel,
    tasks: Sequence[TaskInput],
) -> tuple[list[ScoredTask], bool]:
    """Score a batch (``/predict``); writes the scores. Returns the outcomes in order and whether
    new features were computed (then the project's duplicate groups need a refresh)."""
    features, problems = ensure_features(store, project_id, extractor, tasks)
    computed = any(t.task_id not in problems for t in tasks) and len(features.task_ids) > 0
    probs = (
        model.head.predict_proba(features.matrix) if len(features.task_ids) else np.zeros((0, 0))
    )
    by_id = {
        int(t): {c: float(p) for c, p in zip(shape.labels, row, strict=True)}
        for t, row in zip(features.task_ids, probs, strict=True)
    }
    groups = store.dup_groups(project_id, list(by_id))
    store.put_scores(
        project_id,
        [
            ScoreRow(t, model.version, p, groups.get(t), prediction_result(shape, p))
            for t, p in by_id.items()
        ],
    )
    out = []
    for task in tasks:
        if task.task_id in by_id:
            out.append(ScoredTask(task.task_id, by_id[task.task_id]))
        else:
            reason = problems.get(task.task_id, "no features")
            out.append(ScoredTask(task.task_id, problem=reason))
    fresh = computed and any(groups.get(t) is None for t in by_id)
    return out, fresh


def rescore_project(
    store: Store,
    project_id: int,
    shape: ProjectShape,
    extractor: FeatureExtractor,
    model: CurrentModel,
    labels: Mapping[int, str],
) -> int:
    """Re-score every task with cached features, regroup near-duplicates, recompute look-alikes.

    Reads features once from the store; nothing is re-extracted. Returns the tasks scored.
    """
    features = store.features(project_id, extractor.name)
    if not len(features.task_ids):
        return 0
    probs = model.head.predict_proba(features.matrix)
    groups = near_duplicate_groups(features.task_ids.tolist(), features.dup_keys)
    rows = []
    for t, row in zip(features.task_ids.tolist(), probs, strict=True):
        p = {c: float(v) for c, v in zip(shape.labels, row, strict=True)}
        rows.append(ScoreRow(t, model.version, p, groups.get(t), prediction_result(shape, p)))
    store.put_scores(project_id, rows)
    found = look_alikes(features.task_ids, features.matrix, probs, shape.labels, labels)
    store.put_lookalikes(
        project_id,
        [LookalikeRow(a.task_id, a.label, a.score, a.anchor_task_id, model.version) for a in found],
    )
    return len(rows)
