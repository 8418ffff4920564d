"""The classifier head: class probabilities from cached features, cheap to retrain.

Two parts, both linear on L2-normalized features, both stored as plain arrays (no pickle):

* **Prototypes** (the cold start): one vector per class built from what the admin gave — class
  names, descriptions and examples for text (embedded by the same model), seed images for
  images. Probabilities are a softmax over cosine similarities with a temperature, as in
  zero-shot classification with sentence embeddings. A class without a prototype shares the
  leftover mass uniformly; with no prototypes at all, every class is equally likely.
* **Logistic regression** trained on the annotations, with ``class_weight="balanced"`` so a rare
  class with five examples is not drowned by a frequent one with five hundred. The annotated set
  is deliberately biased (the planner over-samples rare classes), so its class frequencies are
  not the population's: balanced weights give probabilities under equal priors, which is the
  honest thing to rank by. Calibration is temperature scaling (Guo et al. 2017) fitted on
  out-of-fold logits: one parameter, so it does not overfit a few dozen labels the way isotonic
  or Platt-per-class would; below ten labels the temperature stays 1.

A class nobody has labeled yet keeps its cold-start probability; the labeled classes share the
rest according to the regression. So a new rare class never drops to zero just because the head
has not seen it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ZERO_SHOT_TEMPERATURE = 0.05
"""Softmax temperature over cosine similarities; MiniLM cosines spread over about 0 to 0.7."""

MIN_LABELS_FOR_CALIBRATION = 10

C = 10.0
"""Inverse L2 strength. Features are unit vectors, so sklearn's default (1.0) keeps logits so
small that a handful of labels barely moves the scores; 10 lets a few labels count, and the
temperature fitted once there are ten or more labels reins in any over-confidence."""


def normalize(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Head:
    """Probabilities over ``classes`` for feature rows; see the module docstring."""

    classes: tuple[str, ...]
    prototype_classes: tuple[str, ...] = ()
    prototypes: np.ndarray | None = None
    trained_classes: tuple[str, ...] = ()
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    temperature: float = 1.0

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """One row per feature row, one column per class (``classes`` order); rows sum to 1."""
        x = normalize(features)
        cold = self._cold(x)
        if self.coef is None or not self.trained_classes:
            return cold
        index = {c: i for i, c in enumerate(self.classes)}
        trained = [index[c] for c in self.trained_classes]
        untrained = [i for i in range(len(self.classes)) if i not in set(trained)]
        logits = (x @ self.coef.T + self.intercept) / self.temperature
        head = softmax(logits) if len(self.trained_classes) > 1 else np.ones((len(x), 1))
        out = np.zeros_like(cold)
        reserved = cold[:, untrained].sum(axis=1, keepdims=True) if untrained else 0.0
        out[:, untrained] = cold[:, untrained]
        out[:, trained] = head * (1.0 - reserved)
        return out

    def _cold(self, x: np.ndarray) -> np.ndarray:
        k = len(self.classes)
        if self.prototypes is None or not self.prototype_classes:
            return np.full((len(x), k), 1.0 / k, dtype=np.float64)
        index = {c: i for i, c in enumerate(self.classes)}
        known = [index[c] for c in self.prototype_classes]
        sims = x @ normalize(self.prototypes).T
        probs = softmax(sims.astype(np.float64) / ZERO_SHOT_TEMPERATURE)
        out = np.zeros((len(x), k), dtype=np.float64)
        unknown = [i for i in range(k) if i not in set(known)]
        share = len(known) / k
        out[:, known] = probs * share
        if unknown:
            out[:, unknown] = (1.0 - share) / len(unknown)
        return out

    # ---- storage: plain arrays in an .npz, never a pickle

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "classes": np.array(self.classes, dtype=str),
            "prototype_classes": np.array(self.prototype_classes, dtype=str),
            "trained_classes": np.array(self.trained_classes, dtype=str),
            "temperature": np.array([self.temperature]),
        }
        for name in ("prototypes", "coef", "intercept"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = np.asarray(value, dtype=np.float32)
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Head:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            optional = {n: data[n] for n in ("prototypes", "coef", "intercept") if n in data}
            return cls(
                classes=tuple(str(c) for c in data["classes"]),
                prototype_classes=tuple(str(c) for c in data["prototype_classes"]),
                trained_classes=tuple(str(c) for c in data["trained_classes"]),
                temperature=float(data["temperature"][0]),
                **optional,
            )


def cold_start_head(
    classes: Sequence[str], prototypes: dict[str, np.ndarray] | None = None
) -> Head:
    """A head from class prototypes only (mean of each class's hint vectors)."""
    prototypes = {c: v for c, v in (prototypes or {}).items() if c in classes and len(v)}
    if not prototypes:
        return Head(classes=tuple(classes))
    names = tuple(c for c in classes if c in prototypes)
    matrix = np.stack([normalize(np.atleast_2d(prototypes[c])).mean(axis=0) for c in names])
    return Head(classes=tuple(classes), prototype_classes=names, prototypes=matrix)


def train_head(cold: Head, features: np.ndarray, labels: Sequence[str], *, seed: int = 0) -> Head:
    """Fit the labeled part on ``features`` (one row per labeled task) and ``labels``.

    Needs at least two classes among the labels; with one, the head says that class gets all
    the mass not reserved for unlabeled classes (there is nothing to contrast it with).
    """
    from sklearn.linear_model import LogisticRegression

    x = normalize(features)
    y = np.asarray(labels)
    present = tuple(c for c in cold.classes if c in set(labels))
    if len(present) < 2:
        return Head(
            classes=cold.classes,
            prototype_classes=cold.prototype_classes,
            prototypes=cold.prototypes,
            trained_classes=present,
            coef=np.zeros((1, x.shape[1]), dtype=np.float32) if present else None,
            intercept=np.zeros(1, dtype=np.float32) if present else None,
        )
    model = LogisticRegression(class_weight="balanced", C=C, max_iter=1000, random_state=seed)
    model.fit(x, y)
    order = [list(model.classes_).index(c) for c in present]
    coef, intercept = _multiclass_parameters(model)
    coef, intercept = coef[order], intercept[order]
    temperature = _temperature(x, y, present, seed)
    return Head(
        classes=cold.classes,
        prototype_classes=cold.prototype_classes,
        prototypes=cold.prototypes,
        trained_classes=present,
        coef=coef.astype(np.float32),
        intercept=intercept.astype(np.float32),
        temperature=temperature,
    )


def _multiclass_parameters(model: object) -> tuple[np.ndarray, np.ndarray]:
    """Weights as one row per class (sklearn keeps a single row for two classes)."""
    coef = np.asarray(model.coef_, dtype=np.float64)  # type: ignore[attr-defined]
    intercept = np.asarray(model.intercept_, dtype=np.float64)  # type: ignore[attr-defined]
    if coef.shape[0] == 1:  # binary: p(class 1) = sigmoid(w x + b) = softmax([0, w x + b])
        coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
        intercept = np.array([0.0, intercept[0]])
    return coef, intercept


def _temperature(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], seed: int) -> float:
    """The temperature minimizing out-of-fold negative log-likelihood (1.0 with too few labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = [int((y == c).sum()) for c in classes]
    if len(y) < MIN_LABELS_FOR_CALIBRATION or min(counts) < 2:
        return 1.0
    folds = StratifiedKFold(n_splits=min(5, min(counts)), shuffle=True, random_state=seed)
    logits = np.zeros((len(y), len(classes)))
    for train, test in folds.split(x, y):
        model = LogisticRegression(class_weight="balanced", C=C, max_iter=1000, random_state=seed)
        model.fit(x[train], y[train])
        coef, intercept = _multiclass_parameters(model)
        order = [list(model.classes_).index(c) for c in classes]
        logits[test] = x[test] @ coef[order].T + intercept[order]
    truth = np.array([classes.index(label) for label in y])
    best, best_nll = 1.0, np.inf
    for t in np.logspace(-1, 1, 41):
        probs = softmax(logits / t)
        nll = -np.mean(np.log(np.clip(probs[np.arange(len(y)), truth], 1e-12, 1.0)))
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best
