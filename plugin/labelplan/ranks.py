"""Queue ranks as prediction scores, moved with as few writes as possible.

Label Studio's *Uncertainty sampling* serves, among unfinished tasks that carry a prediction of
the project's model version, the lowest ``score`` first. So the queue order is written as
scores in [0, 1]. Rewriting every score after each annotation would cost one API call per
queued task; instead, :func:`reconcile` keeps every already-written task whose score is still in
the right order relative to the others — the longest increasing subsequence (LIS) of current
scores taken in the desired order — and gives new scores only to the rest, placed in the gaps
between kept neighbours (fractional indexing). Moving one task costs one write; appending new
tasks at the tail costs nothing for the tasks already there.

Pure: no I/O. ``tests/unit/test_ranks.py`` checks with hypothesis that the written scores always
sort into the desired order and that no kept task is rewritten.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

LOW = 0.0
HIGH = 1.0
MIN_GAP = 1e-9
"""Closer than this, two floats could compare equal after Label Studio's JSON round trip."""

TAIL_SHARE = 0.5
"""New tasks after the last kept one use only this share of the room left below ``HIGH``, so
repeated top-ups at the tail do not exhaust the interval (each halves it at most)."""


class RankError(ValueError):
    """The desired order cannot be written (a task listed twice)."""


@dataclass(frozen=True)
class Moves:
    """What to write so that scores sort into the desired order."""

    create: dict[int, float] = field(default_factory=dict)
    """Tasks without a written prediction: task id -> score."""
    update: dict[int, float] = field(default_factory=dict)
    """Tasks whose prediction must move: task id -> new score."""
    delete: list[int] = field(default_factory=list)
    """Tasks that left the queue: delete their prediction."""
    renumbered: bool = False
    """True when the gaps ran out and every queued task was re-spaced."""

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def longest_increasing(values: Sequence[float]) -> list[int]:
    """Indices of one longest strictly increasing subsequence of ``values`` (O(n log n))."""
    tails: list[float] = []
    tail_index: list[int] = []
    parent = [-1] * len(values)
    for i, value in enumerate(values):
        at = bisect.bisect_left(tails, value)
        if at == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[at] = value
            tail_index[at] = i
        parent[i] = tail_index[at - 1] if at else -1
    chain: list[int] = []
    i = tail_index[-1] if tail_index else -1
    while i != -1:
        chain.append(i)
        i = parent[i]
    return chain[::-1]


def spread(low: float, high: float, count: int) -> list[float]:
    """``count`` evenly spaced values strictly between ``low`` and ``high``."""
    step = (high - low) / (count + 1)
    return [low + step * (i + 1) for i in range(count)]


def reconcile(
    desired: Sequence[int],
    current: Mapping[int, float],
    *,
    keep: frozenset[int] = frozenset(),
) -> Moves:
    """The fewest writes that make ``current`` scores sort into the ``desired`` order.

    ``current`` holds the written score of every task that has a queue prediction. Tasks in
    ``keep`` are left alone even when not desired (e.g. labeled tasks: Label Studio no longer
    serves them, so deleting their prediction would be a wasted call). Other written tasks
    missing from ``desired`` are deleted.
    """
    if len(set(desired)) != len(desired):
        seen: set[int] = set()
        twice = next(t for t in desired if t in seen or seen.add(t))  # type: ignore[func-returns-value]
        raise RankError(f"task {twice} appears twice in the desired queue")
    wanted = set(desired)
    delete = sorted(t for t in current if t not in wanted and t not in keep)
    written = [t for t in desired if t in current]
    anchors = {written[i] for i in longest_increasing([current[t] for t in written])}
    scores: dict[int, float] = {t: current[t] for t in anchors}
    pending: list[int] = []
    previous = LOW
    for task in desired:
        if task not in anchors:
            pending.append(task)
            continue
        if pending and not _fill(scores, pending, previous, current[task]):
            return _renumber(desired, current, delete)
        pending = []
        previous = current[task]
    if pending:
        tail_high = previous + (HIGH - previous) * TAIL_SHARE if anchors else HIGH
        if not _fill(scores, pending, previous, tail_high):
            return _renumber(desired, current, delete)
    return _moves(desired, current, scores, delete, renumbered=False)


def _fill(scores: dict[int, float], tasks: list[int], low: float, high: float) -> bool:
    values = spread(low, high, len(tasks))
    if (high - low) / (len(tasks) + 1) < MIN_GAP:
        return False
    scores.update(zip(tasks, values, strict=True))
    return True


def _renumber(desired: Sequence[int], current: Mapping[int, float], delete: list[int]) -> Moves:
    scores = dict(zip(desired, spread(LOW, HIGH * TAIL_SHARE, len(desired)), strict=True))
    return _moves(desired, current, scores, delete, renumbered=True)


def _moves(
    desired: Sequence[int],
    current: Mapping[int, float],
    scores: dict[int, float],
    delete: list[int],
    *,
    renumbered: bool,
) -> Moves:
    create = {t: scores[t] for t in desired if t not in current}
    update = {t: scores[t] for t in desired if t in current and scores[t] != current[t]}
    return Moves(create=create, update=update, delete=delete, renumbered=renumbered)
