"""Synthetic plans and snapshots for the planner's tests: small, varied, reproducible.

Hypothesis draws the shape (sizes, shares, caps, a numpy seed); numpy fills in the rows, so a
failing example is replayed exactly from the seed hypothesis prints.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import strategies as st

from labelplan.plan import Plan

NOW = datetime(2024, 5, 8, 12, 0, tzinfo=UTC)  # a Wednesday
CLASSES = ["car", "person", "bicycle", "stop_sign", "dog"]
EASY = ["car", "person"]
MUST_NOT_MISS = ["bicycle", "stop_sign"]


def make_plan(**sections: Any) -> Plan:
    """A plan over :data:`CLASSES` (car and person easy), with sections overridden."""
    data: dict[str, Any] = {
        "seed": 11,
        "classes": {
            "car": {"tier": "nice_to_have", "easy": True, "labels": ["Car"]},
            "person": {"tier": "nice_to_have", "easy": True},
            "bicycle": {"tier": "must_not_miss", "labels": ["Bicycle", "Bike"], "weekly_min": 8},
            "stop_sign": {"tier": "must_not_miss", "weekly_min": 6},
            "dog": {"tier": "experimental", "weekly_min": 2},
        },
        "sources": {"keys": ["camera", "lighting"], "max_share": 0.4},
    }
    data.update(sections)
    return Plan.model_validate(data)


def records(
    n: int,
    seed: int,
    *,
    labeled_share: float = 0.1,
    dup_share: float = 0.3,
    cameras: int = 6,
    lightings: int = 3,
    band_share: float = 0.0,
) -> list[dict[str, Any]]:
    """``n`` task records in the snapshot format.

    Scores are a noisy softmax around a true class; ``band_share`` of the tasks are made to look
    like a must-not-miss class (0.15 <= p < 0.45) while another class is likelier, i.e. hard
    negatives. Labeled tasks are spread over this week and the three before it.
    """
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    truth = rng.choice(k, size=n, p=[0.35, 0.3, 0.15, 0.1, 0.1])
    logits = rng.normal(0.0, 1.0, size=(n, k))
    logits[np.arange(n), truth] += rng.uniform(0.0, 4.0, size=n)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    band = rng.random(n) < band_share
    for i in np.flatnonzero(band):
        rare = rng.choice([2, 3])
        p_rare = rng.uniform(0.16, 0.44)
        other = rng.choice([c for c in range(k) if c != rare])
        rest = 1.0 - p_rare
        p_other = max(p_rare + 0.01, rng.uniform(0.5, 1.0) * rest)
        row = np.full(k, (rest - p_other) / (k - 2))
        row[rare], row[other] = p_rare, p_other
        probs[i] = row
    probs = np.round(probs, 4)
    group = np.where(rng.random(n) < dup_share, rng.integers(0, max(1, n // 4), size=n), -1)
    labeled = rng.random(n) < labeled_share
    out = []
    for i in range(n):
        record: dict[str, Any] = {
            "id": int(1000 + i * 7),
            "scores": dict(zip(CLASSES, probs[i].tolist(), strict=True)),
            "source": {
                "camera": f"cam{rng.integers(cameras)}",
                "lighting": f"light{rng.integers(lightings)}",
            },
            "dup_group": None if group[i] < 0 else f"g{group[i]}",
            "status": "unlabeled",
        }
        if labeled[i]:
            record["status"] = "labeled"
            record["labels"] = [CLASSES[truth[i]]]
            age = timedelta(hours=float(rng.uniform(0, 24 * 28)))
            record["labeled_at"] = (NOW - age).isoformat()
            record["lead_time"] = float(rng.uniform(5, 90))
        out.append(record)
    return out


numpy_seeds = st.integers(min_value=0, max_value=2**32 - 1)
