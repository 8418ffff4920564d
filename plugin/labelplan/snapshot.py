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
million tasks reading dominates the planner's cost, and ``json.loads`` of each line is most of
it; the rest is kept small by working a chunk of lines at a time, one field per pass, with
C-level getters instead of a Python loop per line (see :class:`_Reader`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, filterfalse, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.plan import Plan

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

#: Lines parsed before they are turned into columns. Small on purpose: a chunk's records (three
#: dicts a line) then stay under the garbage collector's first threshold (700 new containers),
#: so reading triggers almost no collections; with 2,048 lines, collections scanning the live
#: records made reading a million lines ~2 s slower. It also keeps the records in cache.
CHUNK_ROWS = 128

STATUSES = ("unlabeled", "labeled")


class SnapshotError(ValueError):
    """A snapshot line cannot be used; the message names the line and the field."""


@dataclass(frozen=True)
class Snapshot:
    """Tasks as columns. Row ``i`` of every array is the same task.

    ``scores`` and ``sources`` are stored column by column (Fortran order): ``scores[:, c]``,
    what lanes rank by, is contiguous.

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
    served_by: dict[int, str] = field(default_factory=dict)
    """For labeled rows the queue served: the lane that served them (the optional ``lane``
    field). The planner resumes each lane's share of the week from these counts."""
    _index: list[IntArray] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def index(self) -> None:
        """Prepare :meth:`row` (a sort of the ids, 16 bytes per task; the reader makes it while
        checking that ids are unique, so this only sorts for a snapshot built otherwise)."""
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
            records = map(json.loads, filterfalse(str.isspace, lines))
            try:
                return build_snapshot(records, plan, source=str(path))
            except json.JSONDecodeError as exc:
                raise SnapshotError(_where_json_breaks(path, exc)) from exc
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read the snapshot ({exc.strerror})") from exc


def snapshot_from_records(records: Iterable[Mapping[str, Any]], plan: Plan) -> Snapshot:
    """Build a snapshot from already-parsed task records (as dicts in the JSONL format)."""
    return build_snapshot(records, plan, "<records>")


def _where_json_breaks(path: Path, exc: json.JSONDecodeError) -> str:
    """Find the first line that is not JSON (only on the error path, so reading stays fast)."""
    with path.open("r", encoding="utf-8") as lines:
        for number, line in enumerate(filterfalse(str.isspace, lines), start=1):
            try:
                json.loads(line)
            except json.JSONDecodeError as bad:
                return f"{path}:{number}: not a JSON object ({bad.msg})"
    return f"{path}: not JSON ({exc.msg})"


def build_snapshot(records: Iterable[Any], plan: Plan, source: str = "<snapshot>") -> Snapshot:
    """Columns from task records, the ``i``-th being line ``i``; errors name the line and field."""
    reader = _Reader(plan, source)
    remaining = iter(records)
    while chunk := list(islice(remaining, CHUNK_ROWS)):
        reader.add(chunk)
    return reader.snapshot()


#: An empty mapping for lines without ``scores`` or ``source`` (never mutated).
_EMPTY: Mapping[str, Any] = {}


class _Reader:
    """A snapshot's columns, filled a chunk of records at a time.

    Each field of a chunk is taken in one pass (a list comprehension or a C-level getter), so
    the Python work per line is a handful of dict lookups: scores come out in plan class order
    through one ``itemgetter`` per line whatever the order in the file, source values and
    near-duplicate groups become integer codes through one dict per column, and only labeled
    lines get a loop of their own. Checks run on whole chunks (numbers, ranges, id types); a chunk
    that fails one is read again line by line (:meth:`_check_line`) to name the first bad line
    and field, so the error path is slow and the common path is not.
    """

    def __init__(self, plan: Plan, source: str) -> None:
        self.source = source
        self.classes = tuple(plan.class_names)
        self.keys = tuple(plan.sources.keys)
        self.label_map = plan.label_map()
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        self.in_plan_order = _values_of(self.classes)
        self.source_codes = [_Codes() for _ in self.keys]
        self.group_codes = _Codes()
        self.id_chunks: list[IntArray] = []
        self.score_chunks: list[FloatArray] = []
        self.source_chunks: list[CodeArray] = []
        self.group_chunks: list[CodeArray] = []
        self.labels: dict[int, tuple[int, ...]] = {}
        self.labeled_at: dict[int, float] = {}
        self.lead_time: dict[int, float] = {}
        self.served_by: dict[int, str] = {}
        self.unmapped = 0
        self.rows = 0

    def add(self, chunk: list[Any]) -> None:
        """Append a chunk of records (lines ``rows + 1`` on) to the columns."""
        first = self.rows + 1
        try:
            ids, scores, sources, groups, flagged = self._columns(chunk)
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as exc:
            self._check_chunk(chunk, first)
            last = first + len(chunk) - 1
            raise SnapshotError(f"{self.source}:{first}-{last}: cannot be read ({exc})") from exc
        for j in flagged:
            labels, unknown, at, seconds = self._labeled(chunk[j], first + j)
            row = self.rows + j
            self.labels[row] = labels
            self.unmapped += unknown
            self.labeled_at[row] = at
            self.lead_time[row] = seconds
            lane = chunk[j].get("lane")
            if isinstance(lane, str) and lane:
                self.served_by[row] = lane
        self.id_chunks.append(ids)
        self.score_chunks.append(scores)
        self.source_chunks.append(sources)
        self.group_chunks.append(groups)
        self.rows += len(chunk)

    def _columns(
        self, chunk: list[Any]
    ) -> tuple[IntArray, FloatArray, CodeArray, CodeArray, list[int]]:
        """The chunk's columns, and which of its lines are not ``unlabeled``.

        A malformed line raises a built-in error that names no line (``KeyError``,
        ``TypeError``, ``AttributeError``, ``ValueError``, ``OverflowError``).
        """
        m = len(chunk)
        raw_ids = [record["id"] for record in chunk]
        if set(map(type, raw_ids)) != {int}:
            raise TypeError("an id is not an integer")
        ids = np.array(raw_ids, dtype=np.int64)
        scores = self._scores([record.get("scores") or _EMPTY for record in chunk])
        if not ((scores >= 0.0) & (scores <= 1.0)).all():
            raise ValueError("a score is not a probability")
        maps = [record.get("source") or _EMPTY for record in chunk]
        sources = np.empty((m, len(self.keys)), dtype=np.int32)
        for j, (key, codes) in enumerate(zip(self.keys, self.source_codes, strict=True)):
            sources[:, j] = codes.encode([values.get(key) for values in maps])
        groups = self.group_codes.encode([record.get("dup_group") for record in chunk])
        flagged = [
            j for j, record in enumerate(chunk) if record.get("status", "unlabeled") != "unlabeled"
        ]
        return ids, scores, sources, groups, flagged

    def _scores(self, maps: list[Mapping[str, Any]]) -> FloatArray:
        """Scores as an ``(m, k)`` float32 matrix in plan class order; classes left out are 0."""
        k = len(self.classes)
        try:
            values = chain.from_iterable(map(self.in_plan_order, maps))
            flat = np.fromiter(values, dtype=np.float32, count=len(maps) * k)
        except KeyError:
            rows = ([values.get(name, 0.0) for name in self.classes] for values in maps)
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.float32, count=len(maps) * k)
        return flat.reshape(len(maps), k)

    def _check_chunk(self, chunk: list[Any], first: int) -> None:
        """Raise the error of the chunk's first bad line (the slow path, only after a failure)."""
        for j, record in enumerate(chunk):
            self._check_line(record, first + j)

    def _check_line(self, record: Any, number: int) -> None:
        """Every check :meth:`_columns` makes, for one line, with an error naming the field."""
        where = f"{self.source}:{number}"
        if not isinstance(record, dict):
            raise SnapshotError(
                f"{where}: each line must be a JSON object; got {type(record).__name__}"
            )
        if "id" not in record:
            raise SnapshotError(f"{where}: missing field 'id'")
        if type(record["id"]) is not int:
            raise SnapshotError(
                f"{where}: id must be an integer (the Label Studio task id); got {record['id']!r}"
            )
        scores = record.get("scores") or _EMPTY
        if not isinstance(scores, dict):
            raise SnapshotError(
                f"{where}: scores must be an object {{class: probability}}; got {scores!r}"
            )
        row = [scores.get(name, 0.0) for name in self.classes]
        shown = dict(zip(self.classes, row, strict=True))
        try:
            values = np.fromiter(row, dtype=np.float32, count=len(row))
        except (TypeError, ValueError):
            raise SnapshotError(
                f"{where}: scores must be numbers in [0, 1] per class; got {shown}"
            ) from None
        if not ((values >= 0.0) & (values <= 1.0)).all():
            raise SnapshotError(f"{where}: scores must be probabilities in [0, 1]; got {shown}")
        sources = record.get("source") or _EMPTY
        if not isinstance(sources, dict):
            raise SnapshotError(
                f"{where}: source must be an object {{key: value}}; got {sources!r}"
            )
        for key in self.keys:
            if not _codable(sources.get(key)):
                raise SnapshotError(
                    f"{where}: source.{key} must be a string or a number; got {sources[key]!r}"
                )
        if not _codable(record.get("dup_group")):
            raise SnapshotError(
                f"{where}: dup_group must be a string or null; got {record['dup_group']!r}"
            )
        if record.get("status", "unlabeled") != "unlabeled":
            self._labeled(record, number)

    def _labeled(
        self, record: Mapping[str, Any], number: int
    ) -> tuple[tuple[int, ...], int, float, float]:
        """A labeled line's class indices, unknown label count, ``labeled_at`` and ``lead_time``."""
        where = f"{self.source}:{number}"
        status = record.get("status")
        if status != "labeled":
            raise SnapshotError(f"{where}: status is {status!r}; allowed: {', '.join(STATUSES)}")
        raw = record.get("labels") or []
        if not isinstance(raw, list):
            raise SnapshotError(f"{where}: labels must be a list of class names; got {raw!r}")
        label_map, class_index = self.label_map, self.class_index
        found = tuple(sorted({class_index[label_map[v]] for v in raw if v in label_map}))
        unknown = sum(1 for v in raw if v not in label_map)
        return (
            found,
            unknown,
            _timestamp(record.get("labeled_at"), where),
            _seconds(record.get("lead_time"), where),
        )

    def snapshot(self) -> Snapshot:
        """The columns as a :class:`Snapshot`, once every id is known to appear once."""
        n, k = self.rows, len(self.classes)
        ids = _joined(self.id_chunks, np.zeros(0, dtype=np.int64))
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
        if repeated.shape[0]:
            shown = np.unique(repeated)[:5].tolist()
            raise SnapshotError(f"{self.source}: task ids appear more than once: {shown}")
        labeled = np.zeros(n, dtype=bool)
        labeled[list(self.labels)] = True
        at = np.full(n, np.nan)
        at[list(self.labeled_at)] = list(self.labeled_at.values())
        lead = np.full(n, np.nan)
        lead[list(self.lead_time)] = list(self.lead_time.values())
        return Snapshot(
            classes=self.classes,
            ids=ids,
            scores=_by_column(self.score_chunks, k, np.float32),
            labeled=labeled,
            dup=_joined(self.group_chunks, np.zeros(0, dtype=np.int32)),
            dup_names=self.group_codes.names(),
            source_keys=self.keys,
            sources=_by_column(self.source_chunks, len(self.keys), np.int32),
            source_values=tuple(codes.names() for codes in self.source_codes),
            labels=self.labels,
            labeled_at=at,
            lead_time=lead,
            unmapped_labels=self.unmapped,
            served_by=self.served_by,
            _index=[order, sorted_ids],
        )


class _Codes:
    """Integer codes for a column's values, ``0..m-1`` in order of first appearance; null is -1.

    One dict lives across chunks, so a value keeps its code in every chunk and each line costs
    one dict lookup.
    """

    def __init__(self) -> None:
        self._index: dict[Any, int] = {None: -1}

    def encode(self, column: list[Any]) -> CodeArray:
        """Codes of ``column``'s values; ``TypeError`` for a value that is not a JSON scalar."""
        index = self._index
        try:  # most chunks bring no new value (cameras, lighting, locations)
            return np.fromiter(map(index.__getitem__, column), dtype=np.int32, count=len(column))
        except KeyError:
            return np.array([index.setdefault(v, len(index) - 1) for v in column], dtype=np.int32)

    def names(self) -> tuple[str, ...]:
        """The values, by code."""
        return tuple(str(value) for value in self._index if value is not None)


def _values_of(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A C-level getter of ``names``' values in that order (``KeyError`` if one is missing)."""
    if len(names) == 1:
        only = itemgetter(names[0])
        return lambda mapping: (only(mapping),)
    return itemgetter(*names)


def _codable(value: Any) -> bool:
    """Whether a source value or group name can be coded: a JSON string, number or null."""
    return value is None or isinstance(value, str | int | float)


def _joined(chunks: list[npt.NDArray[Any]], empty: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.concatenate(chunks) if chunks else empty


def _by_column(chunks: list[npt.NDArray[Any]], width: int, dtype: type) -> npt.NDArray[Any]:
    """Row chunks joined into one ``(n, width)`` matrix stored column by column (Fortran order).

    Lanes read one class's scores (or one source key's codes) over every task; stored this way
    that column is contiguous, and the join is the only copy.
    """
    rows = sum(chunk.shape[0] for chunk in chunks)
    joined = np.empty((rows, width), dtype=dtype, order="F")
    if chunks:
        np.concatenate(chunks, out=joined)
    return joined


def _timestamp(value: Any, where: str) -> float:
    """``labeled_at`` as POSIX seconds; naive times are taken as UTC; missing is NaN."""
    if value is None:
        return float("nan")
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SnapshotError(
            f"{where}: labeled_at must be an ISO 8601 time such as "
            f"2024-05-06T10:11:00Z; got {value!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _seconds(value: Any, where: str) -> float:
    """``lead_time`` in seconds; missing is NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SnapshotError(f"{where}: lead_time must be seconds (a number >= 0); got {value!r}")
    return float(value)
