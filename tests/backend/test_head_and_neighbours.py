"""The classifier head, near-duplicate groups and look-alikes: pure functions over arrays."""

from __future__ import annotations

import numpy as np
import pytest

from labelplan_backend.duplicates import near_duplicate_groups
from labelplan_backend.head import Head, cold_start_head, train_head
from labelplan_backend.lookalikes import look_alikes
from labelplan_backend.text import minhash_signature

CLASSES = ("common", "rare", "unseen")


def clusters(
    rng: np.random.Generator, counts: dict[str, int], dim: int = 16
) -> tuple[np.ndarray, list[str]]:
    centers = {c: rng.normal(size=dim) * 3 for c in counts}
    rows, labels = [], []
    for name, n in counts.items():
        rows.append(centers[name] + rng.normal(size=(n, dim)))
        labels += [name] * n
    return np.vstack(rows).astype(np.float32), labels


def test_without_prototypes_or_labels_every_class_is_equally_likely() -> None:
    probs = cold_start_head(CLASSES).predict_proba(np.ones((2, 4)))
    assert np.allclose(probs, 1 / 3)


def test_cold_start_prefers_the_nearest_prototype_and_spreads_the_rest_uniformly() -> None:
    head = cold_start_head(
        CLASSES, {"common": np.array([[1.0, 0.0]]), "rare": np.array([[0.0, 1.0]])}
    )
    probs = head.predict_proba(np.array([[0.9, 0.1]]))[0]
    assert probs[0] > probs[1]
    assert probs[2] == pytest.approx(1 / 3)
    assert probs.sum() == pytest.approx(1.0)


def test_a_rare_class_with_few_labels_is_still_found_thanks_to_balanced_weights() -> None:
    rng = np.random.default_rng(0)
    x, y = clusters(rng, {"common": 200, "rare": 6})
    head = train_head(cold_start_head(CLASSES), x, y)
    test_x, _ = clusters(np.random.default_rng(0), {"common": 0, "rare": 6})
    rare_probs = head.predict_proba(x[-6:])[:, 1]
    assert (rare_probs > 0.5).all()
    assert test_x.shape[0] == 6


def test_an_unlabeled_class_keeps_its_cold_start_probability() -> None:
    rng = np.random.default_rng(1)
    x, y = clusters(rng, {"common": 20, "rare": 20})
    head = train_head(cold_start_head(CLASSES), x, y)
    probs = head.predict_proba(x)
    assert np.allclose(probs[:, 2], 1 / 3)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_calibration_fits_a_temperature_once_there_are_enough_labels() -> None:
    rng = np.random.default_rng(2)
    x, y = clusters(rng, {"common": 30, "rare": 30}, dim=8)
    few = train_head(cold_start_head(CLASSES), x[:4].copy(), ["common", "common", "rare", "rare"])
    many = train_head(cold_start_head(CLASSES), x, y)
    assert few.temperature == 1.0
    assert many.temperature != 1.0


def test_a_head_survives_the_store_as_plain_arrays() -> None:
    rng = np.random.default_rng(3)
    x, y = clusters(rng, {"common": 10, "rare": 10})
    head = train_head(cold_start_head(CLASSES, {"unseen": np.ones((1, 16))}), x, y)
    again = Head.from_bytes(head.to_bytes())
    assert np.allclose(again.predict_proba(x), head.predict_proba(x))


def test_near_identical_texts_share_a_group_and_different_ones_do_not() -> None:
    a = "The quick brown fox jumps over the lazy dog near the river bank today."
    keys = [
        minhash_signature(a),
        minhash_signature(a + "!"),
        minhash_signature("Completely different words here, nothing shared at all."),
    ]
    groups = near_duplicate_groups([5, 3, 9], keys)
    assert groups[5] == groups[3] == "dup:3"
    assert groups[9] == "dup:9"


def test_perceptual_hashes_within_a_few_bits_share_a_group() -> None:
    base = 0x8F3C_1234_ABCD_0F0F
    near = base ^ 0b1011  # 3 bits differ
    far = base ^ 0xFFFF_FFFF_0000_0000
    groups = near_duplicate_groups(
        [1, 2, 3, 4], [f"{base:016x}", f"{near:016x}", f"{far:016x}", None]
    )
    assert groups[1] == groups[2] == "dup:1"
    assert groups[3] == "dup:3"
    assert groups[4] is None


def test_look_alikes_are_negatives_nearest_to_a_rare_classs_positives() -> None:
    features = np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0], [0.7, 0.7]], dtype=np.float32)
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.9, 0.1], [0.6, 0.4]])
    labels = {10: "rare", 12: "common"}
    found = look_alikes(np.array([10, 11, 12, 13]), features, probs, ("common", "rare"), labels)
    rare = [f for f in found if f.label == "rare"]
    assert [f.task_id for f in rare] == [11, 13]  # 12 is far; 10 is the positive itself
    assert all(f.anchor_task_id == 10 for f in rare)
    assert rare[0].score > rare[1].score
