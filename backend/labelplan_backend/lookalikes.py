"""Look-alikes: tasks that resemble a class's positives but are (probably) not of that class.

These are the hard negatives the planner's hard-negative lane serves: labeling them teaches the
model where the boundary of a rare class is, which random negatives never do. For each class,
the positives are the tasks labeled with it (or, when it has no labels yet, those predicted it
with probability ≥ ``positive_at``); the candidates are tasks labeled with another class or
predicted below ``negative_below``. A candidate's score is its highest cosine similarity to any
positive, and it names that positive (the planner's reason: "looks like bicycle task 812").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from labelplan_backend.head import normalize

MAX_POSITIVES = 256
"""Positives per class used as anchors (most confident first): bounds the cost at 100k tasks."""


@dataclass(frozen=True)
class LookAlike:
    task_id: int
    label: str
    score: float
    anchor_task_id: int


def look_alikes(
    task_ids: np.ndarray,
    features: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    labels: Mapping[int, str],
    *,
    positive_at: float = 0.5,
    negative_below: float = 0.5,
    min_similarity: float = 0.3,
    per_class: int = 1000,
) -> list[LookAlike]:
    """The top ``per_class`` look-alikes of every class, most similar first."""
    if len(task_ids) == 0:
        return []
    x = normalize(features)
    row_label = np.array([labels.get(int(t), "") for t in task_ids])
    found: list[LookAlike] = []
    for k, name in enumerate(classes):
        labeled_pos = np.flatnonzero(row_label == name)
        if len(labeled_pos):
            positives = labeled_pos
        else:
            positives = np.flatnonzero((row_label == "") & (probs[:, k] >= positive_at))
        if not len(positives):
            continue
        positives = positives[np.argsort(-probs[positives, k], kind="stable")][:MAX_POSITIVES]
        negative = ((row_label != "") & (row_label != name)) | (
            (row_label == "") & (probs[:, k] < negative_below)
        )
        candidates = np.flatnonzero(negative)
        if not len(candidates):
            continue
        sims = x[candidates] @ x[positives].T
        best = sims.argmax(axis=1)
        score = sims[np.arange(len(candidates)), best]
        keep = score >= min_similarity
        candidates, best, score = candidates[keep], best[keep], score[keep]
        top = np.argsort(-score, kind="stable")[:per_class]
        found.extend(
            LookAlike(
                task_id=int(task_ids[candidates[i]]),
                label=name,
                score=float(np.clip(score[i], 0.0, 1.0)),
                anchor_task_id=int(task_ids[positives[best[i]]]),
            )
            for i in top
        )
    return found
