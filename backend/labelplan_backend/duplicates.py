"""Near-duplicate groups from the extractors' keys: what the planner caps per group.

Two kinds of key, one outcome: a group id per task (the smallest task id in its group), so the
same input always gives the same groups whichever worker computes them.

* MinHash signatures (text): locality-sensitive hashing with ``bands`` x ``rows`` (Leskovec,
  Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3). With 8 bands of 4 rows, a pair with
  Jaccard similarity 0.8 lands in a shared bucket with probability 0.98, a pair at 0.5 with 0.4;
  candidates are then kept only if their estimated similarity reaches ``threshold``.
* Perceptual hashes (images, 16 hex digits): two hashes within Hamming distance ``max_bits``
  (< 8) share at least one of their 8 bytes exactly (pigeonhole), so bucketing by byte finds
  every candidate; candidates are then checked bit by bit.

Groups are the connected components of the kept pairs (union-find).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

MINHASH_THRESHOLD = 0.8
PHASH_MAX_BITS = 6


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def near_duplicate_groups(
    task_ids: Sequence[int],
    keys: Sequence[str | None],
    *,
    minhash_threshold: float = MINHASH_THRESHOLD,
    phash_max_bits: int = PHASH_MAX_BITS,
) -> dict[int, str | None]:
    """Task id -> group id (``"dup:<smallest task id>"``); tasks without a key get ``None``.

    Keys of 16 hex digits are perceptual hashes, longer ones MinHash signatures.
    """
    order = sorted(range(len(task_ids)), key=lambda i: int(task_ids[i]))
    ids = [int(task_ids[i]) for i in order]
    sorted_keys = [keys[i] for i in order]
    finder = _UnionFind(len(ids))
    phashes = [(i, k) for i, k in enumerate(sorted_keys) if k and len(k) == 16]
    minhashes = [(i, k) for i, k in enumerate(sorted_keys) if k and len(k) > 16]
    _link_phashes(phashes, finder, phash_max_bits)
    _link_minhashes(minhashes, finder, minhash_threshold)
    return {
        ids[i]: (f"dup:{ids[finder.find(i)]}" if sorted_keys[i] else None) for i in range(len(ids))
    }


def _link_phashes(items: list[tuple[int, str]], finder: _UnionFind, max_bits: int) -> None:
    if not items:
        return
    values = np.array([int(k, 16) for _, k in items], dtype=np.uint64)
    for byte in range(8):
        chunk = (values >> np.uint64(8 * byte)) & np.uint64(0xFF)
        order = np.argsort(chunk, kind="stable")
        bounds = np.flatnonzero(np.diff(chunk[order])) + 1
        for members in np.split(order, bounds):
            if len(members) < 2:
                continue
            distances = np.bitwise_count(values[members][:, None] ^ values[members][None, :])
            for a, b in zip(*np.nonzero(np.triu(distances <= max_bits, k=1)), strict=True):
                finder.union(items[members[a]][0], items[members[b]][0])


def _link_minhashes(
    items: list[tuple[int, str]], finder: _UnionFind, threshold: float, bands: int = 8
) -> None:
    if not items:
        return
    signatures = np.stack(
        [np.frombuffer(bytes.fromhex(k), dtype=">u8").astype(np.uint64) for _, k in items]
    )
    rows = max(1, signatures.shape[1] // bands)
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for position, signature in enumerate(signatures):
        for band in range(bands):
            buckets[(band, signature[band * rows : (band + 1) * rows].tobytes())].append(position)
    for members in buckets.values():
        for a_index, a in enumerate(members):
            for b in members[a_index + 1 :]:
                if finder.find(items[a][0]) == finder.find(items[b][0]):
                    continue
                if float(np.mean(signatures[a] == signatures[b])) >= threshold:
                    finder.union(items[a][0], items[b][0])
