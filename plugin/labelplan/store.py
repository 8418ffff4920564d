"""The store: the only code in labelplan that talks to a database.

One schema, two engines: a SQLite file (WAL) by default, PostgreSQL when ``LABELPLAN_DB`` is a
``postgresql://`` URL — the same SQL, the same migrations. It holds what the sync service and
the ML backend must agree on across processes and restarts: task snapshots, annotations,
features, scores, model heads, the queue predictions written to Label Studio, cursors, and an
audit log. Nothing here knows about Label Studio or planning; callers pass plain rows.

Every writer is an upsert keyed by Label Studio's own ids, so replaying the same input (a
retried webhook, a reconcile after a crash) never duplicates a row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SQLITE_PATH = "labelplan.sqlite3"
"""Where the store lives when ``LABELPLAN_DB`` is not set (relative to the working directory)."""


class StoreError(RuntimeError):
    """The store could not be opened or used; the message says what to fix."""


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class TaskRow:
    task_id: int
    data: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    is_labeled: bool = False
    overlap: int = 1
    problem: str | None = None
    """Why this task cannot be planned (missing data key, unreadable media), or None."""


@dataclass(frozen=True)
class AnnotationRow:
    annotation_id: int
    task_id: int
    completed_by: int | None
    labels: tuple[str, ...]
    lead_time: float | None
    was_cancelled: bool
    created_at: datetime | None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FeatureRow:
    task_id: int
    vector: np.ndarray
    dup_key: str | None = None


@dataclass(frozen=True)
class Features:
    """Cached features of one extractor: row ``i`` of ``matrix`` belongs to ``task_ids[i]``."""

    task_ids: np.ndarray
    matrix: np.ndarray
    dup_keys: list[str | None]


@dataclass(frozen=True)
class ScoreRow:
    task_id: int
    model_version: str
    probs: dict[str, float]
    dup_group: str | None = None
    result: list[dict[str, Any]] = field(default_factory=list)
    """The pre-annotation the backend suggests (Label Studio ``result``)."""


@dataclass(frozen=True)
class ModelRecord:
    version: str
    blob: bytes
    meta: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class QueueRow:
    """One queue prediction as written to Label Studio."""

    task_id: int
    prediction_id: int
    model_version: str
    score: float
    lane: str
    reason: str


@dataclass(frozen=True)
class LookalikeRow:
    """Task ``task_id`` looks like class ``label`` (cosine ``score`` to ``anchor_task_id``) but is
    labeled or predicted something else: a hard negative for that class."""

    task_id: int
    label: str
    score: float
    anchor_task_id: int
    model_version: str


@dataclass(frozen=True)
class SampleRow:
    """One review sampling decision: whether a labeled task gets a second annotation, and why."""

    task_id: int
    annotator: int
    tier: str
    week: str
    position: int
    probability: float
    sampled: bool
    reason: str
    state: str
    decided_at: datetime | None = None


@dataclass(frozen=True)
class LotRow:
    """One judged review lot: an annotator's items of one tier in one week."""

    annotator: int
    tier: str
    week: str
    size: int
    reviewed: int
    defects: int
    acceptance: int
    passed: bool
    state: str
    judged_at: datetime | None = None


@dataclass(frozen=True)
class EscalationRow:
    """A task sent to the expert reviewers; ``answer`` is the settled labels once settled."""

    task_id: int
    reason: str
    opened_at: datetime
    status: str
    settled_at: datetime | None = None
    answer: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReviewRow:
    """A reviewer's verdict on an annotation, from Label Studio Enterprise's review API.

    ``labels`` are the reviewer's corrected labels when they changed the result, else ``None``.
    """

    review_id: int
    annotation_id: int
    task_id: int
    reviewer: int | None
    accepted: bool
    labels: tuple[str, ...] | None
    created_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    kind: str
    details: dict[str, Any]


# --------------------------------------------------------------------------- schema

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE tasks (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, data TEXT NOT NULL,
            created_at TEXT, updated_at TEXT, is_labeled INTEGER NOT NULL DEFAULT 0,
            overlap INTEGER NOT NULL DEFAULT 1, problem TEXT,
            PRIMARY KEY (project_id, task_id))""",
        """CREATE TABLE annotations (
            project_id BIGINT NOT NULL, annotation_id BIGINT NOT NULL, task_id BIGINT NOT NULL,
            completed_by BIGINT, labels TEXT NOT NULL, lead_time DOUBLE PRECISION,
            was_cancelled INTEGER NOT NULL DEFAULT 0, created_at TEXT, updated_at TEXT,
            PRIMARY KEY (project_id, annotation_id))""",
        "CREATE INDEX annotations_by_task ON annotations (project_id, task_id)",
        """CREATE TABLE features (
            project_id BIGINT NOT NULL, extractor TEXT NOT NULL, task_id BIGINT NOT NULL,
            dim INTEGER NOT NULL, vector {blob} NOT NULL, dup_key TEXT,
            PRIMARY KEY (project_id, extractor, task_id))""",
        """CREATE TABLE scores (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, model_version TEXT NOT NULL,
            probs TEXT NOT NULL, dup_group TEXT, result TEXT NOT NULL,
            PRIMARY KEY (project_id, task_id))""",
        """CREATE TABLE models (
            project_id BIGINT NOT NULL, version TEXT NOT NULL, blob {blob} NOT NULL,
            meta TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (project_id, version))""",
        """CREATE TABLE queue (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, prediction_id BIGINT NOT NULL,
            model_version TEXT NOT NULL, score DOUBLE PRECISION NOT NULL, lane TEXT NOT NULL,
            reason TEXT NOT NULL, PRIMARY KEY (project_id, task_id))""",
        """CREATE TABLE cursors (
            project_id BIGINT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (project_id, name))""",
        """CREATE TABLE audit (
            id {serial}, project_id BIGINT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL,
            details TEXT NOT NULL)""",
        "CREATE INDEX audit_by_project ON audit (project_id, id)",
    ),
    (
        # The backend's look-alikes (hard negatives): task looks like class `label` (anchor task).
        """CREATE TABLE lookalikes (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, label TEXT NOT NULL,
            score DOUBLE PRECISION NOT NULL, anchor_task_id BIGINT NOT NULL, model_version TEXT NOT NULL,
            PRIMARY KEY (project_id, task_id, label))""",
        "CREATE INDEX lookalikes_by_label ON lookalikes (project_id, label, score)",
    ),
    (
        # Review (labelplan.review): one sampling decision per labeled task, judged lots, escalations.
        """CREATE TABLE review_samples (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, annotator BIGINT NOT NULL,
            tier TEXT NOT NULL, week TEXT NOT NULL, position INTEGER NOT NULL,
            probability DOUBLE PRECISION NOT NULL, sampled INTEGER NOT NULL, reason TEXT NOT NULL,
            state TEXT NOT NULL, decided_at TEXT NOT NULL, PRIMARY KEY (project_id, task_id))""",
        "CREATE INDEX review_samples_by_lot ON review_samples (project_id, annotator, tier, week)",
        """CREATE TABLE review_lots (
            project_id BIGINT NOT NULL, annotator BIGINT NOT NULL, tier TEXT NOT NULL,
            week TEXT NOT NULL, size INTEGER NOT NULL, reviewed INTEGER NOT NULL,
            defects INTEGER NOT NULL, acceptance INTEGER NOT NULL, passed INTEGER NOT NULL,
            state TEXT NOT NULL, judged_at TEXT NOT NULL,
            PRIMARY KEY (project_id, annotator, tier, week))""",
        """CREATE TABLE escalations (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, reason TEXT NOT NULL,
            opened_at TEXT NOT NULL, status TEXT NOT NULL, settled_at TEXT, answer TEXT,
            PRIMARY KEY (project_id, task_id))""",
    ),
    (
        # Review through Label Studio Enterprise's review API: verdicts read back, and the sampled
        # tasks assigned to reviewers (so each is assigned once).
        """CREATE TABLE reviews (
            project_id BIGINT NOT NULL, review_id BIGINT NOT NULL, annotation_id BIGINT NOT NULL,
            task_id BIGINT NOT NULL, reviewer BIGINT, accepted INTEGER NOT NULL, labels TEXT,
            created_at TEXT, PRIMARY KEY (project_id, review_id))""",
        """CREATE TABLE review_assignments (
            project_id BIGINT NOT NULL, task_id BIGINT NOT NULL, reviewers TEXT NOT NULL,
            assigned_at TEXT NOT NULL, PRIMARY KEY (project_id, task_id))""",
    ),
)
"""Schema versions, oldest first. Append a tuple to migrate; never edit a shipped one."""

_DIALECT_TYPES = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGSERIAL PRIMARY KEY"},
}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# --------------------------------------------------------------------------- the store


class Store:
    """A connection per thread to one database; see :func:`open_store`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = (
            "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        )
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        if self.dialect == "sqlite":
            self.path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
            if not self.path.parent.exists():
                raise StoreError(
                    f"the folder of the store file {self.path} does not exist: create it or set LABELPLAN_DB"
                )
        self.migrate()

    def __repr__(self) -> str:
        shown = self.url.split("@")[-1] if self.dialect == "postgresql" else self.url  # no password
        return f"Store({self.dialect}: {shown})"

    # ---- connections

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            connection = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
            return connection
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg ships with the dependencies
            raise StoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from exc
        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"could not connect to PostgreSQL at {self!r}: {str(exc).strip()}"
            ) from exc

    @property
    def connection(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                with contextlib.suppress(Exception):
                    connection.close()
            self._all.clear()
        self._local = threading.local()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(self._sql(statement), tuple(params))
        try:
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        with self.transaction():
            if self.dialect == "sqlite":
                self.connection.executemany(statement, rows)
            else:
                with self.connection.cursor() as cursor:
                    cursor.executemany(self._sql(statement), rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work (nested uses join the outer one)."""
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        connection = self.connection
        self._local.depth = 1
        try:
            if self.dialect == "sqlite":
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            else:
                with connection.transaction():
                    yield
        finally:
            self._local.depth = 0

    # ---- migrations

    def migrate(self) -> int:
        """Bring the schema to the newest version; returns it. Safe to run from many processes."""
        types = _DIALECT_TYPES[self.dialect]
        with self._schema_lock():
            self.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = self.execute("SELECT version FROM schema_version")
            if not rows:
                self.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = int(rows[0][0]) if rows else 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"the store at {self!r} has schema version {current}, newer than this labelplan "
                    f"({len(MIGRATIONS)}): upgrade labelplan"
                )
            for version, statements in enumerate(MIGRATIONS[current:], start=current + 1):
                with self.transaction():
                    for statement in statements:
                        self.execute(statement.format(**types))
                    self.execute("UPDATE schema_version SET version = ?", (version,))
            return len(MIGRATIONS)

    @contextlib.contextmanager
    def _schema_lock(self) -> Iterator[None]:
        with self.leader_lock(0, wait=True):
            yield

    @contextlib.contextmanager
    def leader_lock(self, project_id: int, *, wait: bool = False) -> Iterator[bool]:
        """Hold the per-project leader lock; yields whether this process got it.

        PostgreSQL: a session advisory lock. SQLite: an exclusive ``flock`` on a file beside the
        database. Either is released when the process dies, so a crashed leader never blocks.
        """
        if self.dialect == "postgresql":
            key = 0x1AB1 << 32 | project_id
            if wait:
                self.execute("SELECT pg_advisory_lock(?)", (key,))
                got = True
            else:
                got = bool(self.execute("SELECT pg_try_advisory_lock(?)", (key,))[0][0])
            try:
                yield got
            finally:
                if got:
                    self.execute("SELECT pg_advisory_unlock(?)", (key,))
            return
        lock_path = self.path.with_name(f"{self.path.name}.lock-{project_id}")
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
            except BlockingIOError:
                got = False
            try:
                yield got
            finally:
                if got:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- tasks and annotations

    def upsert_tasks(self, project_id: int, rows: Iterable[TaskRow]) -> None:
        self.executemany(
            """INSERT INTO tasks (project_id, task_id, data, created_at, updated_at, is_labeled, overlap, problem)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO UPDATE SET data = excluded.data,
                 created_at = excluded.created_at, updated_at = excluded.updated_at,
                 is_labeled = excluded.is_labeled, overlap = excluded.overlap, problem = excluded.problem""",
            (
                (
                    project_id,
                    r.task_id,
                    json.dumps(r.data, sort_keys=True),
                    _iso(r.created_at),
                    _iso(r.updated_at),
                    int(r.is_labeled),
                    r.overlap,
                    r.problem,
                )
                for r in rows
            ),
        )

    def tasks(self, project_id: int) -> list[TaskRow]:
        rows = self.execute(
            "SELECT task_id, data, created_at, updated_at, is_labeled, overlap, problem FROM tasks "
            "WHERE project_id = ? ORDER BY task_id",
            (project_id,),
        )
        return [
            TaskRow(int(t), json.loads(d), _time(c), _time(u), bool(lab), int(o), p)
            for t, d, c, u, lab, o, p in rows
        ]

    def delete_tasks(self, project_id: int, task_ids: Iterable[int]) -> None:
        ids = [(project_id, int(i)) for i in task_ids]
        with self.transaction():
            for table in ("tasks", "annotations", "scores", "queue", "features"):
                self.executemany(f"DELETE FROM {table} WHERE project_id = ? AND task_id = ?", ids)

    def upsert_annotations(self, project_id: int, rows: Iterable[AnnotationRow]) -> None:
        self.executemany(
            """INSERT INTO annotations (project_id, annotation_id, task_id, completed_by, labels, lead_time,
                 was_cancelled, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, annotation_id) DO UPDATE SET task_id = excluded.task_id,
                 completed_by = excluded.completed_by, labels = excluded.labels,
                 lead_time = excluded.lead_time, was_cancelled = excluded.was_cancelled,
                 created_at = excluded.created_at, updated_at = excluded.updated_at""",
            (
                (
                    project_id,
                    r.annotation_id,
                    r.task_id,
                    r.completed_by,
                    json.dumps(list(r.labels)),
                    r.lead_time,
                    int(r.was_cancelled),
                    _iso(r.created_at),
                    _iso(r.updated_at),
                )
                for r in rows
            ),
        )

    def replace_task_annotations(
        self, project_id: int, task_id: int, rows: Sequence[AnnotationRow]
    ) -> None:
        """Make the store hold exactly ``rows`` for this task (deleted annotations disappear)."""
        with self.transaction():
            self.execute(
                "DELETE FROM annotations WHERE project_id = ? AND task_id = ?",
                (project_id, task_id),
            )
            self.upsert_annotations(project_id, rows)

    def annotations(self, project_id: int) -> list[AnnotationRow]:
        rows = self.execute(
            "SELECT annotation_id, task_id, completed_by, labels, lead_time, was_cancelled, created_at, updated_at "
            "FROM annotations WHERE project_id = ? ORDER BY annotation_id",
            (project_id,),
        )
        return [
            AnnotationRow(
                int(a),
                int(t),
                int(c) if c is not None else None,
                tuple(json.loads(labs)),
                float(lt) if lt is not None else None,
                bool(cx),
                _time(ca),
                _time(ua),
            )
            for a, t, c, labs, lt, cx, ca, ua in rows
        ]

    # ---- features, scores, models (the backend)

    def put_features(self, project_id: int, extractor: str, rows: Iterable[FeatureRow]) -> None:
        self.executemany(
            """INSERT INTO features (project_id, extractor, task_id, dim, vector, dup_key) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, extractor, task_id) DO UPDATE SET dim = excluded.dim,
                 vector = excluded.vector, dup_key = excluded.dup_key""",
            (
                (
                    project_id,
                    extractor,
                    r.task_id,
                    int(np.asarray(r.vector).size),
                    np.asarray(r.vector, dtype=np.float32).tobytes(),
                    r.dup_key,
                )
                for r in rows
            ),
        )

    def features(
        self, project_id: int, extractor: str, task_ids: Sequence[int] | None = None
    ) -> Features:
        """Cached feature vectors, in ``task_ids`` order where given (missing ids are left out)."""
        rows = self.execute(
            "SELECT task_id, dim, vector, dup_key FROM features WHERE project_id = ? AND extractor = ? ORDER BY task_id",
            (project_id, extractor),
        )
        by_id = {int(t): (int(d), bytes(v), k) for t, d, v, k in rows}
        order = (
            [int(t) for t in task_ids if int(t) in by_id] if task_ids is not None else list(by_id)
        )
        if not order:
            return Features(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32), [])
        dim = by_id[order[0]][0]
        matrix = np.frombuffer(b"".join(by_id[t][1] for t in order), dtype=np.float32).reshape(
            len(order), dim
        )
        return Features(np.asarray(order, dtype=np.int64), matrix, [by_id[t][2] for t in order])

    def put_scores(self, project_id: int, rows: Iterable[ScoreRow]) -> None:
        self.executemany(
            """INSERT INTO scores (project_id, task_id, model_version, probs, dup_group, result) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO UPDATE SET model_version = excluded.model_version,
                 probs = excluded.probs, dup_group = excluded.dup_group, result = excluded.result""",
            (
                (
                    project_id,
                    r.task_id,
                    r.model_version,
                    json.dumps(r.probs),
                    r.dup_group,
                    json.dumps(r.result),
                )
                for r in rows
            ),
        )

    def scores(self, project_id: int) -> list[ScoreRow]:
        rows = self.execute(
            "SELECT task_id, model_version, probs, dup_group, result FROM scores WHERE project_id = ? ORDER BY task_id",
            (project_id,),
        )
        return [ScoreRow(int(t), v, json.loads(p), g, json.loads(r)) for t, v, p, g, r in rows]

    def put_model(self, project_id: int, model: ModelRecord) -> None:
        self.execute(
            """INSERT INTO models (project_id, version, blob, meta, created_at) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (project_id, version) DO UPDATE SET blob = excluded.blob, meta = excluded.meta""",
            (
                project_id,
                model.version,
                model.blob,
                json.dumps(model.meta),
                _iso(model.created_at or datetime.now(UTC)),
            ),
        )

    def latest_model(self, project_id: int) -> ModelRecord | None:
        rows = self.execute(
            "SELECT version, blob, meta, created_at FROM models WHERE project_id = ? "
            "ORDER BY created_at DESC, version DESC LIMIT 1",
            (project_id,),
        )
        if not rows:
            return None
        version, blob, meta, created = rows[0]
        return ModelRecord(version, bytes(blob), json.loads(meta), _time(created))

    # ---- the queue written to Label Studio (the sync)

    def queue(self, project_id: int) -> dict[int, QueueRow]:
        rows = self.execute(
            "SELECT task_id, prediction_id, model_version, score, lane, reason FROM queue WHERE project_id = ?",
            (project_id,),
        )
        return {int(t): QueueRow(int(t), int(p), v, float(s), la, r) for t, p, v, s, la, r in rows}

    def put_queue(self, project_id: int, rows: Iterable[QueueRow]) -> None:
        self.executemany(
            """INSERT INTO queue (project_id, task_id, prediction_id, model_version, score, lane, reason)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO UPDATE SET prediction_id = excluded.prediction_id,
                 model_version = excluded.model_version, score = excluded.score, lane = excluded.lane,
                 reason = excluded.reason""",
            (
                (project_id, r.task_id, r.prediction_id, r.model_version, r.score, r.lane, r.reason)
                for r in rows
            ),
        )

    def remove_queue(self, project_id: int, task_ids: Iterable[int]) -> None:
        self.executemany(
            "DELETE FROM queue WHERE project_id = ? AND task_id = ?",
            ((project_id, int(t)) for t in task_ids),
        )

    # ---- cursors and audit

    def cursor(self, project_id: int, name: str) -> str | None:
        rows = self.execute(
            "SELECT value FROM cursors WHERE project_id = ? AND name = ?", (project_id, name)
        )
        return str(rows[0][0]) if rows else None

    def set_cursor(self, project_id: int, name: str, value: str) -> None:
        self.execute(
            "INSERT INTO cursors (project_id, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value",
            (project_id, name, value),
        )

    def audit(self, project_id: int, kind: str, details: dict[str, Any]) -> None:
        self.execute(
            "INSERT INTO audit (project_id, at, kind, details) VALUES (?, ?, ?, ?)",
            (
                project_id,
                _iso(datetime.now(UTC)),
                kind,
                json.dumps(details, sort_keys=True, default=str),
            ),
        )

    def audit_log(self, project_id: int, limit: int = 50) -> list[AuditEntry]:
        rows = self.execute(
            "SELECT id, at, kind, details FROM audit WHERE project_id = ? ORDER BY id DESC LIMIT ?",
            (project_id, limit),
        )
        return [
            AuditEntry(int(i), datetime.fromisoformat(a), k, json.loads(d)) for i, a, k, d in rows
        ]

    # ---- backend: look-alikes, task problems, training lock (labelplan_backend)

    TRAINING_LOCK_OFFSET = 1 << 30
    """Training locks live beside the sync's leader locks, offset so the two never collide."""

    def training_lock(
        self, project_id: int, *, wait: bool = True
    ) -> contextlib.AbstractContextManager[bool]:
        """One trainer per project across workers and replicas (released if the process dies)."""
        return self.leader_lock(self.TRAINING_LOCK_OFFSET + project_id, wait=wait)

    def put_lookalikes(self, project_id: int, rows: Iterable[LookalikeRow]) -> None:
        """Replace the project's look-alikes with ``rows`` (they are recomputed whole each time)."""
        rows = list(rows)
        with self.transaction():
            self.execute("DELETE FROM lookalikes WHERE project_id = ?", (project_id,))
            self.executemany(
                """INSERT INTO lookalikes (project_id, task_id, label, score, anchor_task_id, model_version)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    (
                        project_id,
                        r.task_id,
                        r.label,
                        float(r.score),
                        r.anchor_task_id,
                        r.model_version,
                    )
                    for r in rows
                ),
            )

    def lookalikes(self, project_id: int, label: str | None = None) -> list[LookalikeRow]:
        """Look-alikes of one class (or all), most similar first."""
        where, params = "project_id = ?", [project_id]
        if label is not None:
            where += " AND label = ?"
            params.append(label)
        rows = self.execute(
            f"SELECT task_id, label, score, anchor_task_id, model_version FROM lookalikes WHERE {where} "
            "ORDER BY label, score DESC, task_id",
            params,
        )
        return [LookalikeRow(int(t), lab, float(s), int(a), v) for t, lab, s, a, v in rows]

    def dup_groups(self, project_id: int, task_ids: Sequence[int]) -> dict[int, str | None]:
        """The near-duplicate group already stored with each task's score (absent: not scored)."""
        found: dict[int, str | None] = {}
        ids = [int(t) for t in task_ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.execute(
                f"SELECT task_id, dup_group FROM scores WHERE project_id = ? AND task_id IN ({marks})",
                [project_id, *chunk],
            )
            found.update({int(t): g for t, g in rows})
        return found

    def model_versions(self, project_id: int) -> list[str]:
        """Every stored model version of a project, oldest first."""
        rows = self.execute(
            "SELECT version FROM models WHERE project_id = ? ORDER BY created_at, version",
            (project_id,),
        )
        return [str(v) for (v,) in rows]

    def set_task_problems(
        self, project_id: int, problems: dict[int, str | None], data: dict[int, dict[str, Any]]
    ) -> None:
        """Record why tasks cannot be scored (``None`` clears it), creating unknown tasks from
        ``data``; every other column the sync owns is left as it is."""
        self.executemany(
            """INSERT INTO tasks (project_id, task_id, data, problem) VALUES (?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO UPDATE SET problem = excluded.problem""",
            (
                (project_id, int(t), json.dumps(data.get(t, {}), sort_keys=True), problem)
                for t, problem in problems.items()
            ),
        )

    # ---- review (labelplan.review): sampling decisions, judged lots, escalations

    def put_samples(self, project_id: int, rows: Iterable[SampleRow]) -> None:
        """Record sampling decisions; a task decided before keeps its first decision."""
        self.executemany(
            """INSERT INTO review_samples (project_id, task_id, annotator, tier, week, position,
                 probability, sampled, reason, state, decided_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO NOTHING""",
            (
                (
                    project_id,
                    r.task_id,
                    r.annotator,
                    r.tier,
                    r.week,
                    r.position,
                    float(r.probability),
                    int(r.sampled),
                    r.reason,
                    r.state,
                    _iso(r.decided_at or datetime.now(UTC)),
                )
                for r in rows
            ),
        )

    def samples(self, project_id: int) -> dict[int, SampleRow]:
        """Every sampling decision of the project, by task id."""
        rows = self.execute(
            "SELECT task_id, annotator, tier, week, position, probability, sampled, reason, state, "
            "decided_at FROM review_samples WHERE project_id = ? ORDER BY task_id",
            (project_id,),
        )
        return {
            int(t): SampleRow(
                int(t), int(a), tier, week, int(pos), float(p), bool(s), r, st, _time(d)
            )
            for t, a, tier, week, pos, p, s, r, st, d in rows
        }

    def put_lots(self, project_id: int, rows: Iterable[LotRow]) -> None:
        """Record judged lots; a lot is judged once (a second verdict is ignored)."""
        self.executemany(
            """INSERT INTO review_lots (project_id, annotator, tier, week, size, reviewed, defects,
                 acceptance, passed, state, judged_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, annotator, tier, week) DO NOTHING""",
            (
                (
                    project_id,
                    r.annotator,
                    r.tier,
                    r.week,
                    r.size,
                    r.reviewed,
                    r.defects,
                    r.acceptance,
                    int(r.passed),
                    r.state,
                    _iso(r.judged_at or datetime.now(UTC)),
                )
                for r in rows
            ),
        )

    def lots(self, project_id: int) -> list[LotRow]:
        """Judged lots, oldest week first (the order switching replays them in)."""
        rows = self.execute(
            "SELECT annotator, tier, week, size, reviewed, defects, acceptance, passed, state, "
            "judged_at FROM review_lots WHERE project_id = ? ORDER BY week, annotator, tier",
            (project_id,),
        )
        return [
            LotRow(int(a), t, w, int(n), int(r), int(d), int(c), bool(p), s, _time(j))
            for a, t, w, n, r, d, c, p, s, j in rows
        ]

    def put_escalations(self, project_id: int, rows: Iterable[EscalationRow]) -> None:
        """Open escalations or update their status; ``opened_at`` and ``reason`` stay the first."""
        self.executemany(
            """INSERT INTO escalations (project_id, task_id, reason, opened_at, status, settled_at, answer)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (project_id, task_id) DO UPDATE SET status = excluded.status,
                 settled_at = excluded.settled_at, answer = excluded.answer""",
            (
                (
                    project_id,
                    r.task_id,
                    r.reason,
                    _iso(r.opened_at),
                    r.status,
                    _iso(r.settled_at),
                    json.dumps(list(r.answer)) if r.answer is not None else None,
                )
                for r in rows
            ),
        )

    def escalations(self, project_id: int) -> dict[int, EscalationRow]:
        """Every escalation of the project, open and settled, by task id."""
        rows = self.execute(
            "SELECT task_id, reason, opened_at, status, settled_at, answer FROM escalations "
            "WHERE project_id = ? ORDER BY task_id",
            (project_id,),
        )
        return {
            int(t): EscalationRow(
                int(t),
                r,
                datetime.fromisoformat(o),
                s,
                _time(st),
                tuple(json.loads(a)) if a is not None else None,
            )
            for t, r, o, s, st, a in rows
        }

    def replace_reviews(self, project_id: int, rows: Iterable[ReviewRow]) -> None:
        """Make the store hold exactly ``rows`` as the project's reviews (a review deleted in
        Label Studio disappears; one edited there is updated)."""
        with self.transaction():
            self.execute("DELETE FROM reviews WHERE project_id = ?", (project_id,))
            self.executemany(
                """INSERT INTO reviews (project_id, review_id, annotation_id, task_id, reviewer,
                     accepted, labels, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (project_id, review_id) DO UPDATE SET
                     annotation_id = excluded.annotation_id, task_id = excluded.task_id,
                     reviewer = excluded.reviewer, accepted = excluded.accepted,
                     labels = excluded.labels, created_at = excluded.created_at""",
                (
                    (
                        project_id,
                        r.review_id,
                        r.annotation_id,
                        r.task_id,
                        r.reviewer,
                        int(r.accepted),
                        json.dumps(list(r.labels)) if r.labels is not None else None,
                        _iso(r.created_at),
                    )
                    for r in rows
                ),
            )

    def reviews(self, project_id: int) -> list[ReviewRow]:
        """The project's reviews, oldest first."""
        rows = self.execute(
            "SELECT review_id, annotation_id, task_id, reviewer, accepted, labels, created_at "
            "FROM reviews WHERE project_id = ? ORDER BY review_id",
            (project_id,),
        )
        return [
            ReviewRow(
                int(r),
                int(a),
                int(t),
                int(u) if u is not None else None,
                bool(ok),
                tuple(json.loads(labs)) if labs is not None else None,
                _time(at),
            )
            for r, a, t, u, ok, labs, at in rows
        ]

    def put_assignments(
        self, project_id: int, task_ids: Iterable[int], reviewers: Sequence[int], at: datetime
    ) -> None:
        """Record that these tasks were assigned to ``reviewers`` for review (first time kept)."""
        self.executemany(
            """INSERT INTO review_assignments (project_id, task_id, reviewers, assigned_at)
               VALUES (?, ?, ?, ?) ON CONFLICT (project_id, task_id) DO NOTHING""",
            (
                (project_id, int(t), json.dumps(sorted(int(u) for u in reviewers)), _iso(at))
                for t in task_ids
            ),
        )

    def delete_assignments(self, project_id: int, task_ids: Iterable[int]) -> None:
        """Forget assignments Label Studio refused (they never happened)."""
        self.executemany(
            "DELETE FROM review_assignments WHERE project_id = ? AND task_id = ?",
            ((project_id, int(t)) for t in task_ids),
        )

    def assignments(self, project_id: int) -> dict[int, tuple[int, ...]]:
        """Tasks assigned for review, with the reviewers they were assigned to."""
        rows = self.execute(
            "SELECT task_id, reviewers FROM review_assignments WHERE project_id = ? ORDER BY task_id",
            (project_id,),
        )
        return {int(t): tuple(json.loads(u)) for t, u in rows}


def open_store(url: str | None = None) -> Store:
    """Open (and migrate) the store at ``url``, else ``LABELPLAN_DB``, else ``./labelplan.sqlite3``.

    ``url`` is a file path, ``sqlite:///path``, or ``postgresql://user@host:5432/db``.
    """
    chosen = url or os.environ.get("LABELPLAN_DB") or DEFAULT_SQLITE_PATH
    return Store(chosen)
