"""The snapshot: the project's tasks as the planner sees them, one task per JSONL line.

A line looks like::

    {"id": 17, "scores": {"bicycle": 0.81, "car": 0.12}, "source": {"camera": "c3"},
     "dup_group": "scene-9", "status": "unlabeled"}
    {"id": 18, "scores": {...}, "status": "labeled", "labels": ["bicycle"],
     "labeled_at": "2024-05-06T10:11:00Z", "lead_time": 41.5}

``scores`` are per-class probabilities from the model (classes missing are 0, classes the plan
does not know are ignored); ``source`` holds task data values for the plan's source keys;
``dup_group`` names a near-duplicate group (absent or null: the task has no near copies);
``labels`` are plan class names or Label Studio label values; ``lead_time`` is Label Studio's
seconds-to-label. Other keys are ignored, so a richer export reads fine.

The reader turns lines into columns (:class:`Snapshot`): an ``(n, k)`` float32 score matrix in
plan class order, integer codes for sources and duplicate groups, and a boolean label mask. At a
million tasks parsing JSON dominates the planner's cost, so the reader does the least Python work
per line and converts to numpy in chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.plan import Plan

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

#: Rows converted to numpy at a time: bounds the memory held in Python objects while reading.
CHUNK_ROWS = 65_536

STATUSES = ("unlabeled", "labeled")


class SnapshotError(ValueError):
    """A snapshot line cannot be used; the message names the line and the field."""


@dataclass(frozen=True)
class Snapshot:
    """Tasks as columns. Row ``i`` of every array is the same task.

    ``sources[i, j]`` is the code of task ``i``'s value for ``source_keys[j]`` (``-1``: absent);
    ``source_values[j][code]`` is the value. ``dup[i]`` is the near-duplicate group code
    (``-1``: none). For labeled rows, ``labels[i]`` holds class indices, ``labeled_at`` is a
    POSIX timestamp and ``lead_time`` seconds (NaN where unknown).
    """

    classes: tuple[str, ...]
    ids: IntArray
    scores: FloatArray
    labeled: BoolArray
    dup: CodeArray
    dup_names: tuple[str, ...]
    source_keys: tuple[str, ...]
    sources: CodeArray
    source_values: tuple[tuple[str, ...], ...]
    labels: Mapping[int, tuple[int, ...]]
    labeled_at: npt.NDArray[np.float64]
    lead_time: npt.NDArray[np.float64]
    unmapped_labels: int = 0
    _index: list[IntArray] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def index(self) -> None:
        """Prepare :meth:`row` (a sort of the ids, O(n log n) once; 16 bytes per task)."""
        if not self._index:
            order = np.argsort(self.ids, kind="stable")
            self._index.extend([order, self.ids[order]])

    def row(self, task_id: int) -> int:
        """The row of a task id, by binary search; raises ``KeyError`` for an unknown task."""
        self.index()
        order, sorted_ids = self._index
        at = int(np.searchsorted(sorted_ids, task_id))
        if at >= sorted_ids.shape[0] or int(sorted_ids[at]) != task_id:
            raise KeyError(task_id)
        return int(order[at])


def read_snapshot(path: str | Path, plan: Plan) -> Snapshot:
    """Read a JSONL snapshot file into columns for ``plan``'s classes and source keys.

    Blank lines are skipped; line numbers in errors count the lines that are not blank.
    """
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as lines:
            records = map(json.loads, filter(str.strip, lines))
            try:
                return build_snapshot(enumerate(records, start=1), plan, source=str(path))
            except json.JSONDecodeError as exc:
                raise SnapshotError(_where_json_breaks(path, exc)) from exc
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read the snapshot ({exc.strerror})") from exc


def snapshot_from_records(records: Iterable[Mapping[str, Any]], plan: Plan) -> Snapshot:
    """Build a snapshot from already-parsed task records (as dicts in the JSONL format)."""
    return build_snapshot(enumerate(records, start=1), plan, "<records>")


def _where_json_breaks(path: Path, exc: json.JSONDecodeError) -> str:
    """Find the first line that is not JSON (only on the error path, so reading stays fast)."""
    with path.open("r", encoding="utf-8") as lines:
        for number, line in enumerate(filter(str.strip, lines), start=1):
            try:
                json.loads(line)
            except json.JSONDecodeError as bad:
                return f"{path}:{number}: not a JSON object ({bad.msg})"
    return f"{path}: not JSON ({exc.msg})"


def build_snapshot(
    numbered: Iterable[tuple[int, Any]], plan: Plan, source: str = "<snapshot>"
) -> Snapshot:
    """Columns from ``(line number, record)`` pairs; errors name the line and the field.

    The loop does as little as possible per line: scores in plan order are copied with one
    ``extend`` when a line lists the classes in that order (the usual case), and source values
    and duplicate groups are collected raw and coded once at the end.
    """
    classes = tuple(plan.class_names)
    keys = tuple(plan.sources.keys)
    label_map = plan.label_map()
    class_index = {name: i for i, name in enumerate(classes)}
    ids: list[Any] = []
    flat: list[float] = []
    raw_sources: list[list[Any]] = [[] for _ in keys]
    groups: list[Any] = []
    labels: dict[int, tuple[int, ...]] = {}
    labeled_at: dict[int, float] = {}
    lead_time: dict[int, float] = {}
    lines: list[int] = []
    score_chunks: list[FloatArray] = []
    unmapped = 0
    k = len(classes)
    for number, record in numbered:
        try:
            ids.append(record["id"])
            scores = record.get("scores") or {}
            if tuple(scores) == classes:
                flat.extend(scores.values())
            else:
                flat.extend([scores.get(name, 0.0) for name in classes])
            if keys:
                values = record.get("source") or {}
                for key, column in zip(keys, raw_sources, strict=True):
                    column.append(values.get(key))
            groups.append(record.get("dup_group"))
            status = record.get("status", "unlabeled")
        except (KeyError, TypeError, AttributeError) as exc:
            raise SnapshotError(_shape_error(source, number, record, exc)) from exc
        lines.append(number)
        if status != "unlabeled":
            row = len(ids) - 1
            if status != "labeled":
                raise SnapshotError(
                    f"{source}:{number}: status is {status!r}; allowed: {', '.join(STATUSES)}"
                )
            found, unknown = _labels(record, label_map, class_index, source, number)
            labels[row] = found
            unmapped += unknown
            labeled_at[row] = _timestamp(record.get("labeled_at"), source, number)
            lead_time[row] = _seconds(record.get("lead_time"), source, number)
        if len(lines) == CHUNK_ROWS:
            score_chunks.append(_score_chunk(flat, lines, source, classes))
            flat, lines = [], []
    if lines or not score_chunks:
        score_chunks.append(_score_chunk(flat, lines, source, classes))
    n = len(ids)
    id_array = _ids(ids, source)
    labeled = np.zeros(n, dtype=bool)
    labeled[list(labels)] = True
    at = np.full(n, np.nan)
    at[list(labeled_at)] = list(labeled_at.values())
    lead = np.full(n, np.nan)
    lead[list(lead_time)] = list(lead_time.values())
    coded = [
        _factorize(column, f"source.{key}", source)
        for key, column in zip(keys, raw_sources, strict=True)
    ]
    dup, dup_names = _factorize(groups, "dup_group", source)
    sources = (
        np.stack([codes for codes, _ in coded], axis=1) if keys else np.zeros((n, 0), np.int32)
    )
    return Snapshot(
        classes=classes,
        ids=id_array,
        scores=np.concatenate(score_chunks).reshape(n, k),
        labeled=labeled,
        dup=dup,
        dup_names=dup_names,
        source_keys=keys,
        sources=sources.astype(np.int32),
        source_values=tuple(values for _, values in coded),
        labels=labels,
        labeled_at=at,
        lead_time=lead,
        unmapped_labels=unmapped,
    )


def _factorize(column: list[Any], name: str, source: str) -> tuple[CodeArray, tuple[str, ...]]:
    """Codes ``0..m-1`` for a column's values in order of first appearance; ``None`` is ``-1``."""
    try:
        unique = dict.fromkeys(column)
    except TypeError:
        bad = next(v for v in column if not isinstance(v, str | int | float | type(None)))
        raise SnapshotError(
            f"{source}: {name} values must be strings or numbers; got {bad!r}"
        ) from None
    unique.pop(None, None)
    index: dict[Any, int] = {value: code for code, value in enumerate(unique)}
    index[None] = -1
    codes = np.fromiter(map(index.__getitem__, column), dtype=np.int32, count=len(column))
    return codes, tuple(str(value) for value in unique)


def _score_chunk(
    flat: list[float], lines: list[int], source: str, classes: tuple[str, ...]
) -> FloatArray:
    """Rows of scores as float32, checked to be probabilities."""
    k = len(classes)
    try:
        chunk = np.asarray(flat, dtype=np.float32).reshape(len(lines), k)
    except (TypeError, ValueError) as exc:
        for i, line in enumerate(lines):
            row = flat[i * k : (i + 1) * k]
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in row):
                raise SnapshotError(
                    f"{source}:{line}: scores must be numbers in [0, 1] per class; "
                    f"got {dict(zip(classes, row, strict=True))}"
                ) from exc
        raise SnapshotError(f"{source}: scores cannot be read ({exc})") from exc
    bad = ~((chunk >= 0.0) & (chunk <= 1.0)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        got = dict(zip(classes, chunk[first].tolist(), strict=True))
        raise SnapshotError(
            f"{source}:{lines[first]}: scores must be probabilities in [0, 1]; got {got}"
        )
    return chunk


def _ids(ids: list[Any], source: str) -> IntArray:
    """Task ids as int64; they must be Label Studio's integer task ids, each once."""
    if not all(type(i) is int for i in ids):
        bad = next(i for i in ids if type(i) is not int)
        raise SnapshotError(
            f"{source}: id must be an integer (the Label Studio task id); got {bad!r}"
        )
    array = np.asarray(ids, dtype=np.int64)
    unique, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1][:5].tolist()
        raise SnapshotError(f"{source}: task ids appear more than once: {repeated}")
    return array


def _labels(
    record: Mapping[str, Any],
    label_map: Mapping[str, str],
    class_index: Mapping[str, int],
    source: str,
    number: int,
) -> tuple[tuple[int, ...], int]:
    """Class indices of a labeled task, and how many of its labels the plan does not know."""
    raw = record.get("labels") or []
    if not isinstance(raw, list):
        raise SnapshotError(f"{source}:{number}: labels must be a list of class names; got {raw!r}")
    found = sorted({class_index[label_map[v]] for v in raw if v in label_map})
    unknown = sum(1 for v in raw if v not in label_map)
    return tuple(found), unknown


def _timestamp(value: Any, source: str, number: int) -> float:
    """``labeled_at`` as POSIX seconds; naive times are taken as UTC; missing is NaN."""
    if value is None:
        return float("nan")
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SnapshotError(
            f"{source}:{number}: labeled_at must be an ISO 8601 time such as "
            f"2024-05-06T10:11:00Z; got {value!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _seconds(value: Any, source: str, number: int) -> float:
    """``lead_time`` in seconds; missing is NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SnapshotError(
            f"{source}:{number}: lead_time must be seconds (a number >= 0); got {value!r}"
        )
    return float(value)


def _shape_error(source: str, number: int, record: Any, exc: Exception) -> str:
    if not isinstance(record, dict):
        return f"{source}:{number}: each line must be a JSON object; got {type(record).__name__}"
    if isinstance(exc, KeyError):
        return f"{source}:{number}: missing field {exc.args[0]!r}"
    return (
        f"{source}:{number}: scores and source must be objects ({{name: value}}) and "
        f"dup_group a string or null; got {exc}"
    )
