"""The sync service: make Label Studio serve the planned queue, and keep it right.

One pass is the pipeline, in order — each step a method, nothing hidden in between:

1. **pull**   Label Studio -> store: a full export the first time, then only tasks whose
   ``updated_at`` moved (plus the ids webhooks named; deleted tasks are dropped).
2. **score**  tasks without scores are sent to the ML backend's ``/predict``, which writes
   per-class probabilities and near-duplicate keys into the shared store.
3. **plan**   store -> planner: the queue head, each entry with its lane and reason.
4. **push**   planner -> Label Studio: the head is written as predictions of the queue's model
   version whose scores encode the rank (``labelplan.ranks``); only what changed is written.
5. **enable** the project serves by *Uncertainty sampling* from the queue's model version; if
   something (an ML backend connection) reset ``model_version``, it is put back and logged.
6. **record** an audit entry: what changed, why, and how many API calls it took.

This module is the only place that uses both adapters (Label Studio and the store).
"""

from __future__ import annotations

import json
import logging
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests

from labelplan import review as rv
from labelplan.labelstudio import (
    AssignmentRefused,
    LabelStudioClient,
    LabelStudioError,
    NewPrediction,
    Project,
    Task,
    labels_of,
)
from labelplan.metrics import Metrics, Rating, TaskFacts, compute
from labelplan.plan import TIER_ORDER, Plan, Tier
from labelplan.ranks import longest_increasing, reconcile
from labelplan.report import merge_description, merge_instructions, prometheus_text
from labelplan.schedule import Queue, plan_queue
from labelplan.snapshot import SnapshotError, snapshot_from_records
from labelplan.store import (
    AnnotationRow,
    EscalationRow,
    LotRow,
    QueueRow,
    ReviewRow,
    SampleRow,
    ScoreRow,
    Store,
    TaskRow,
)
from labelplan.webhooks import Changes, Exposition

log = logging.getLogger(__name__)

UNCERTAINTY = "Uncertainty sampling"
SETTLED_STATUSES = frozenset(status.value for status in rv.SETTLED)
REVIEW_LANE = "review"
"""The queue lane of a task that got its queue prediction from the review step (no plan lane)."""
QUEUE_VERSION = "labelplan-queue"


class SyncError(RuntimeError):
    """The sync cannot run for this project as configured; nothing was written."""


@dataclass(frozen=True)
class ReviewHow:
    """How sampled items are reviewed: ``second_annotation`` or ``review_api``, and why."""

    mode: str
    reason: str


@dataclass(frozen=True)
class SyncSettings:
    """How one project is synced. Defaults suit a team of a few annotators."""

    project_id: int
    queue_version: str = QUEUE_VERSION
    head_size: int = 200
    """How many queued tasks Label Studio holds predictions for."""
    refill_below: float = 0.5
    """Top the head up (in one bulk write) when fewer than this share of it is still unlabeled."""
    front: int = 10
    """The first entries of the plan are always written exactly, whatever the refill state. It
    must cover the labels made between two passes (webhooks make that one or two); a longer
    front costs more writes, since the plan's order a few positions ahead still shifts."""
    bulk_from: int = 50
    """From this many new predictions on, one import call instead of one call each."""
    reconcile_seconds: float = 2.0
    """Overlap when asking for tasks updated since the last pass (clock skew, same-second writes)."""
    score_per_pass: int = 0
    """Score at most this many new tasks per pass (0: all). With a slow backend (images on a
    CPU) the first queue is then written after the first tasks are scored, and it improves as
    the rest are scored over the next passes. The tasks are taken in a seeded random order, so
    each pass's share is a fair sample of the project."""
    metrics_every: float = 60.0
    """Rewrite the metrics block in the description (and the annotators' quota status) at most
    this often, in seconds, unless the alarms changed: a pass runs on every webhook."""


@dataclass
class PassReport:
    """What one pass did; stored in the audit log and shown by the CLI."""

    pulled: int = 0
    deleted_tasks: int = 0
    scored: int = 0
    awaiting_scores: int = 0
    """Tasks left for later passes to score (``score_per_pass``); planned unscored till then."""
    planned: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    renumbered: bool = False
    restored: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    """What the review step did: how (``mode``), decided, sampled, reopened, assigned, escalated,
    settled, lots judged."""
    alarms: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return sum(n for method, n in self.calls.items() if method != "GET")


class Scorer(Protocol):
    """Something that puts per-class scores for tasks into the store."""

    def score(self, project: Project, tasks: Sequence[TaskRow]) -> list[str]:
        """Score ``tasks``; returns problems (one line each) instead of raising for a bad batch."""
        ...


@dataclass
class BackendScorer:
    """Asks the labelplan ML backend to score tasks over its Label Studio protocol (``/predict``).

    The backend writes what the planner needs (probabilities per class, near-duplicate group,
    look-alikes) into the shared store; this side only triggers it, in batches.
    """

    url: str
    auth: tuple[str, str] | None = field(default=None, repr=False)
    batch: int = 100
    timeout: float = 100.0

    def score(self, project: Project, tasks: Sequence[TaskRow]) -> list[str]:
        problems: list[str] = []
        for start in range(0, len(tasks), self.batch):
            chunk = tasks[start : start + self.batch]
            body = {
                "tasks": [{"id": t.task_id, "data": t.data} for t in chunk],
                "project": f"{project.id}.{int(time.time())}",
                "label_config": project.label_config,
                "params": {},
            }
            try:
                answer = requests.post(
                    f"{self.url.rstrip('/')}/predict",
                    json=body,
                    auth=self.auth,
                    timeout=self.timeout,
                )
                answer.raise_for_status()
            except requests.RequestException as exc:
                problems.append(
                    f"backend could not score tasks {chunk[0].task_id}..{chunk[-1].task_id}: {exc}"
                )
        return problems


Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SyncService:
    """Keeps one Label Studio project serving the plan's queue. See the module docstring."""

    def __init__(
        self,
        client: LabelStudioClient,
        store: Store,
        plan: Plan,
        settings: SyncSettings,
        *,
        scorer: Scorer | None = None,
        changes: Changes | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self.client = client
        self.store = store
        self.plan = plan
        self.settings = settings
        self.scorer = scorer
        self.changes = changes or Changes()
        self.clock = clock
        self.project_id = settings.project_id
        self._verified = False
        self.last_queue: Queue | None = None
        self._members: dict[str, int] | None = None
        self.review_how: ReviewHow | None = None
        """How this service reviews (decided by the first check; see :meth:`review_mode`)."""

    # ---------------------------------------------------------------- checks

    def check(self) -> Project:
        """Fail before writing anything if this plan cannot drive this project."""
        project = self.client.read_project(self.project_id)
        known = set(project.taxonomy.labels)
        missing = {
            name: [label for label in spec.labels if label not in known]
            for name, spec in self.plan.classes.items()
        }
        missing = {name: labels for name, labels in missing.items() if labels}
        if missing:
            shown = "; ".join(
                f"class {name!r} maps to {labels}" for name, labels in missing.items()
            )
            raise SyncError(
                f"the plan's labels are not in project {self.project_id}'s label config: {shown}. "
                f"The project's labels are: {', '.join(project.taxonomy.labels)}."
            )
        if self.plan.review.enabled and self.review_how is None:
            self.review_how = self.review_mode()
        return project

    def review_mode(self) -> ReviewHow:
        """Decide how sampled items are reviewed, say so (log and store), or refuse.

        ``review.mode: auto`` uses Label Studio Enterprise's review API where the server has one
        and a blind second annotation elsewhere; ``review_api`` on a server without it is a
        :class:`SyncError` before anything is written.
        """
        wanted = self.plan.review.mode
        if wanted == "second_annotation":
            how = ReviewHow(
                "second_annotation",
                "blind second annotation (the plan's review.mode is second_annotation)",
            )
        else:
            api = self.client.review_api(self.project_id)
            if api.available:
                how = ReviewHow("review_api", f"Label Studio's review API ({api.reason})")
            elif wanted == "review_api":
                raise SyncError(
                    f"the plan's review.mode is review_api, but {api.reason}. Use review.mode: "
                    "auto or second_annotation on this server."
                )
            else:
                how = ReviewHow("second_annotation", f"blind second annotation ({api.reason})")
        log.info("project %s: review by %s", self.project_id, how.reason)
        self.store.set_cursor(self.project_id, "review_mode", json.dumps(asdict(how)))
        return how

    # ---------------------------------------------------------------- one pass

    def run_pass(self) -> PassReport:
        """One pull -> score -> plan -> push -> enable -> record pass."""
        report = PassReport()
        self._members = None  # members can join between passes
        calls_before = Counter(self.client.calls)
        try:
            project = self._timed(report, "check", self.check)
            if not self._verified:
                self._timed(report, "verify", lambda: self.verify_queue(report))
            self._timed(report, "pull", lambda: self.pull(report))
            self._timed(report, "score", lambda: self.score(project, report))
            queue = self._timed(report, "plan", lambda: self.plan_head(report))
            self._timed(report, "push", lambda: self.push(queue, report))
            self._timed(report, "enable", lambda: self.enable(project, report))
            self._timed(report, "review", lambda: self.review(report))
            self._timed(report, "metrics", lambda: self.metrics(project, report))
        except Exception:
            self._verified = False  # what reached Label Studio is unknown: read it back next time
            raise
        finally:
            report.calls = dict(Counter(self.client.calls) - calls_before)
            self.store.audit(self.project_id, "pass", asdict(report))
        return report

    @staticmethod
    def _timed(report: PassReport, step: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return work()
        finally:
            report.seconds[step] = round(time.perf_counter() - started, 3)

    # ---------------------------------------------------------------- 0. verify

    def verify_queue(self, report: PassReport) -> None:
        """Make the store's queue match Label Studio's: after a start, a crash or a failed pass.

        A prediction created just before a crash is in Label Studio but not in the store; a task
        with two queue predictions keeps the first and loses the others.
        """
        found = self.client.list_predictions(
            self.project_id, model_version=self.settings.queue_version
        )
        by_task: dict[int, list[Any]] = defaultdict(list)
        for prediction in sorted(found, key=lambda p: p.id):
            by_task[prediction.task_id].append(prediction)
        extra = [p.id for predictions in by_task.values() for p in predictions[1:]]
        if extra:
            self.client.delete_predictions(extra)
            report.problems.append(
                f"removed {len(extra)} duplicate queue predictions left by an interrupted pass"
            )
        known = self.store.queue(self.project_id)
        rows = []
        for task_id, predictions in by_task.items():
            first = predictions[0]
            old = known.get(task_id)
            rows.append(
                QueueRow(
                    task_id,
                    first.id,
                    first.model_version,
                    float(first.score or 0.0),
                    old.lane if old else "unknown",
                    old.reason if old else "found in Label Studio",
                )
            )
        with self.store.transaction():
            self.store.remove_queue(self.project_id, [t for t in known if t not in by_task])
            self.store.put_queue(self.project_id, rows)
        self._verified = True

    # ---------------------------------------------------------------- 1. pull

    def pull(self, report: PassReport) -> None:
        """Bring the store up to date with Label Studio (export first, then changes only)."""
        changed_ids, deleted_ids = self.changes.take()
        cursor = self.store.cursor(self.project_id, "updated_at")
        if cursor is None:
            tasks: Iterable[Task] = self.client.load_tasks(self.project_id)
        else:
            since = datetime.fromisoformat(cursor) - timedelta(
                seconds=self.settings.reconcile_seconds
            )
            tasks = self.client.iter_tasks(self.project_id, updated_since=since)
        latest = datetime.fromisoformat(cursor) if cursor else None
        task_rows: list[TaskRow] = []
        annotation_rows: dict[int, list[AnnotationRow]] = {}

        def keep(task: Task) -> None:
            task_rows.append(task_row(task))
            annotation_rows[task.id] = annotation_rows_of(task)

        for task in tasks:
            keep(task)
            if task.updated_at and (latest is None or task.updated_at > latest):
                latest = task.updated_at
            changed_ids.discard(task.id)
        for task_id in sorted(changed_ids):  # named by a webhook but not (yet) seen by the filter
            try:
                keep(self.client.read_task(task_id))
            except LabelStudioError as exc:
                report.problems.append(f"task {task_id} from a webhook could not be read: {exc}")
        with self.store.transaction():
            self.store.upsert_tasks(self.project_id, task_rows)
            for task_id, rows in annotation_rows.items():
                self.store.replace_task_annotations(self.project_id, task_id, rows)
            if deleted_ids:
                self.store.delete_tasks(self.project_id, deleted_ids)
            if latest is not None:
                self.store.set_cursor(self.project_id, "updated_at", latest.isoformat())
        report.pulled = len(task_rows)
        report.deleted_tasks = len(deleted_ids)

    # ---------------------------------------------------------------- 2. score

    def score(self, project: Project, report: PassReport) -> None:
        """Have the backend score tasks that have no scores yet."""
        if self.scorer is None:
            return
        scored = {s.task_id for s in self.store.scores(self.project_id)}
        todo = [
            t
            for t in self.store.tasks(self.project_id)
            if t.task_id not in scored and not t.is_labeled
        ]
        if not todo:
            return
        waiting = 0
        limit = self.settings.score_per_pass
        if limit and len(todo) > limit:
            rng = random.Random(self.plan.seed)
            todo = sorted(todo, key=lambda t: t.task_id)
            rng.shuffle(todo)
            # tasks the backend could not read before go last, so they never block the rest
            todo.sort(key=lambda t: t.problem is not None)
            todo, waiting = todo[:limit], len(todo) - limit
        report.problems.extend(self.scorer.score(project, todo))
        now_scored = {s.task_id for s in self.store.scores(self.project_id)}
        report.scored = sum(t.task_id in now_scored for t in todo)
        unscored = len(todo) - report.scored
        if unscored:
            report.problems.append(
                f"{unscored} tasks have no scores (backend down or bad task data); planned without"
            )
        report.awaiting_scores = waiting

    # ---------------------------------------------------------------- 3. plan

    def records(self) -> list[dict[str, Any]]:
        """The store's tasks as planner records (the snapshot format of ``labelplan plan``)."""
        scores = {s.task_id: s for s in self.store.scores(self.project_id)}
        by_task: dict[int, list[AnnotationRow]] = defaultdict(list)
        for annotation in self.store.annotations(self.project_id):
            if not annotation.was_cancelled:
                by_task[annotation.task_id].append(annotation)
        lanes = {t: row.lane for t, row in self.store.queue(self.project_id).items()}
        return [
            task_record(
                task,
                by_task.get(task.task_id, []),
                scores.get(task.task_id),
                self.plan,
                lanes.get(task.task_id),
            )
            for task in self.store.tasks(self.project_id)
        ]

    def plan_head(self, report: PassReport) -> Queue:
        records = self.records()
        try:
            snapshot = snapshot_from_records(records, self.plan)
        except SnapshotError as exc:
            raise SyncError(f"the store's tasks cannot be planned: {exc}") from exc
        queue = plan_queue(snapshot, self.plan, self.clock(), self.settings.head_size * 2)
        report.planned = len(queue.entries)
        if report.planned < self.settings.head_size:
            report.problems.append(
                f"the plan yields {report.planned} tasks for a head of {self.settings.head_size}: "
                f"{queue.summary.ended_because or 'no more candidates'}"
            )
        report.summary = {
            "week": str(queue.summary.week),
            "classes": [asdict(status) for status in queue.summary.classes],
            "easy": [queue.summary.easy_count, queue.summary.easy_cap],
            "ended_because": queue.summary.ended_because,
        }
        self.last_queue = queue
        return queue

    # ---------------------------------------------------------------- 4. push

    def push(self, queue: Queue, report: PassReport) -> None:
        """Write the queue head to Label Studio with the fewest calls."""
        written = self.store.queue(self.project_id)
        labeled = {t.task_id for t in self.store.tasks(self.project_id) if t.is_labeled}
        # the review step owns the scores of tasks waiting for review (see _rank_review)
        ranked = json.loads(self.store.cursor(self.project_id, "review_ranked") or "[]")
        held = labeled | (set(ranked) if self.plan.review.enabled else set())
        active = {t: row.score for t, row in written.items() if t not in held}
        planned = [e.id for e in queue.entries if e.id not in held]
        desired = self.desired(planned, active)
        moves = reconcile(desired, active, keep=frozenset(t for t in written if t in held))
        entries = {e.id: e for e in queue.entries}
        results = self._preannotations(moves.create)
        if moves.delete:
            self.client.delete_predictions(written[t].prediction_id for t in moves.delete)
            self.store.remove_queue(self.project_id, moves.delete)
        for task_id, score in moves.update.items():
            self.client.update_prediction(written[task_id].prediction_id, score=score)
            entry = entries[task_id]
            self.store.put_queue(
                self.project_id,
                [
                    QueueRow(
                        task_id,
                        written[task_id].prediction_id,
                        self.settings.queue_version,
                        score,
                        entry.lane,
                        entry.reason,
                    )
                ],
            )
        self._create(moves.create, results, entries, report)
        report.updated, report.deleted = len(moves.update), len(moves.delete)
        report.renumbered = moves.renumbered

    def desired(self, planned: Sequence[int], active: dict[int, float]) -> list[int]:
        """The order Label Studio should hold: exact at the front, cheap behind it.

        Only the next tasks served have to be right now: the plan after the next labels may
        differ anyway. So the first ``front`` planned tasks come first, in plan order; the other
        planned tasks already written keep their current order (no writes); and when the
        unlabeled part of the written head falls below ``refill_below``, the missing tasks of
        the planned head join at the tail, in one bulk write. Written tasks the plan no longer
        wants are removed.
        """
        front = list(planned[: self.settings.front])
        in_front = set(front)
        wanted = set(planned)
        kept = sorted(
            (t for t in active if t in wanted and t not in in_front), key=active.__getitem__
        )
        order = front + self._replace_movers(front, kept, planned, active)
        head = self.settings.head_size
        still_queued = len(kept) + sum(t in active for t in front)
        if still_queued < head * self.settings.refill_below:
            placed = set(order)
            order += [t for t in planned[:head] if t not in placed]
        return order

    @staticmethod
    def _replace_movers(
        front: list[int], kept: list[int], planned: Sequence[int], active: dict[int, float]
    ) -> list[int]:
        """Queued tasks that must move anyway (their score sits before the front's) go to their
        planned place among the others, not just behind the front: a task nudged only one step
        would be in the way again next pass and cost a write every pass."""
        written = [t for t in front + kept if t in active]
        stay = {written[i] for i in longest_increasing([active[t] for t in written])}
        moving = [t for t in kept if t not in stay]
        if not moving:
            return kept
        rank = {t: i for i, t in enumerate(planned)}
        placed = [t for t in kept if t in stay]
        for task in sorted(moving, key=rank.__getitem__):
            at = next((i for i, t in enumerate(placed) if rank[t] > rank[task]), len(placed))
            placed.insert(at, task)
        return placed

    def _preannotations(self, tasks: dict[int, float]) -> dict[int, list[dict[str, Any]]]:
        if not self.plan.preannotations or not tasks:
            return {}
        return {
            s.task_id: s.result
            for s in self.store.scores(self.project_id)
            if s.task_id in tasks and s.result
        }

    def _create(
        self,
        create: dict[int, float],
        results: dict[int, list[dict[str, Any]]],
        entries: dict[int, Any],
        report: PassReport,
    ) -> None:
        version = self.settings.queue_version
        predictions = [NewPrediction(t, s, version, results.get(t, [])) for t, s in create.items()]
        if len(predictions) >= self.settings.bulk_from:
            try:
                self.client.write_predictions(self.project_id, predictions)
            except (
                LabelStudioError
            ) as exc:  # some were dropped (e.g. a stale pre-annotation): fix below
                report.problems.append(str(exc))
            landed = {
                p.task_id: p
                for p in self.client.list_predictions(self.project_id, model_version=version)
            }
            ids = {t: landed[t].id for t in create if t in landed}
        else:
            ids = {}
        for prediction in predictions:
            if prediction.task_id in ids:
                continue
            ids[prediction.task_id] = self._create_one(prediction, report)
        rows = [
            QueueRow(t, ids[t], version, create[t], entries[t].lane, entries[t].reason)
            for t in create
            if ids.get(t)
        ]
        self.store.put_queue(self.project_id, rows)
        report.created = len(rows)

    def _create_one(self, prediction: NewPrediction, report: PassReport) -> int:
        try:
            return self.client.create_prediction(prediction)
        except LabelStudioError as exc:
            if not prediction.result:
                report.problems.append(
                    f"task {prediction.task_id}: queue prediction refused: {exc}"
                )
                return 0
            report.problems.append(
                f"task {prediction.task_id}: pre-annotation refused, queued without it ({exc})"
            )
            bare = NewPrediction(prediction.task_id, prediction.score, prediction.model_version, [])
            return self.client.create_prediction(bare)

    # ---------------------------------------------------------------- 5. enable

    def enable(self, project: Project, report: PassReport) -> None:
        """Point the project at the queue (once predictions of its version exist)."""
        if not self.store.queue(self.project_id):
            return
        if not self.store.cursor(self.project_id, "previous_sampling"):
            self.store.set_cursor(self.project_id, "previous_sampling", project.sampling)
            self.store.set_cursor(self.project_id, "previous_model_version", project.model_version)
        version = self.settings.queue_version
        if project.sampling == UNCERTAINTY and project.model_version == version:
            return
        if (
            project.model_version not in ("", version)
            and self.store.cursor(self.project_id, "enabled") == "yes"
        ):
            log.warning(
                "project %s: model_version was changed to %r (an ML backend connection?); putting back %r",
                self.project_id,
                project.model_version,
                version,
            )
            report.restored.append(f"model_version {project.model_version!r} -> {version!r}")
        self.client.update_project(self.project_id, sampling=UNCERTAINTY, model_version=version)
        self.store.set_cursor(self.project_id, "enabled", "yes")

    # ---------------------------------------------------------------- 7. review

    REVIEW_TAB = "Review queue"
    ESCALATIONS_TAB = "Escalations"
    exposition: Exposition | None = None
    """Where the metrics step publishes the Prometheus text (the receiver's ``/metrics``)."""
    last_metrics: Metrics | None = None

    def review(self, report: PassReport) -> None:
        """Judge finished lots, sample newly labeled tasks for a blind second annotation, settle
        or escalate disagreements, and keep the reviewers' tabs current (``docs/review.md``)."""
        if not self.plan.review.enabled:
            return
        how = self.review_how or self.review_mode()
        self.review_how = how
        if how.mode == "review_api":
            self._pull_reviews(report)
        now = self.clock()
        facts = self.task_facts()
        tasks = {t.task_id: t for t in self.store.tasks(self.project_id)}
        samples = self.store.samples(self.project_id)
        escalations = self.store.escalations(self.project_id)
        settlements = {f.task_id: self._settle(f) for f in facts}
        judged = self._judge_lots(facts, samples, settlements, now)
        states = self.review_states()
        decisions = rv.decide(
            self._new_items(facts, samples), self.plan, states, self._lot_sizes(samples)
        )
        self.store.put_samples(
            self.project_id,
            [
                SampleRow(
                    d.task_id,
                    d.annotator,
                    d.tier.value,
                    d.week,
                    d.position,
                    d.probability,
                    d.sampled,
                    d.reason,
                    d.state.value,
                    now,
                )
                for d in decisions
            ],
        )
        opened = [
            EscalationRow(d.task_id, d.reason, now, rv.Status.escalated.value)
            for d in decisions
            if d.escalate and d.task_id not in escalations
        ]
        settled = []
        for fact in facts:
            settlement = settlements[fact.task_id]
            row = escalations.get(fact.task_id)
            if row is None and settlement.status is rv.Status.escalated:
                opened.append(
                    EscalationRow(
                        fact.task_id,
                        f"annotators disagree on a rare class (agreement {settlement.agreement:.0%})",
                        now,
                        settlement.status.value,
                    )
                )
            elif row is not None and settlement.settled and row.status != settlement.status.value:
                answer = tuple(sorted(settlement.answer or ()))
                settled.append(
                    replace(row, status=settlement.status.value, settled_at=now, answer=answer)
                )
        self.store.put_escalations(self.project_id, [*opened, *settled])
        escalations = self.store.escalations(self.project_id)
        samples = self.store.samples(self.project_id)
        second = how.mode == "second_annotation"
        reviewers_only = {f.task_id: _reviewers_only(f) for f in facts}
        reopened = self._reopen(
            tasks,
            samples,
            escalations,
            settlements,
            report,
            second=second,
            reviewers_only=reviewers_only,
        )
        assigned = 0 if second else self._assign(tasks, samples, settlements, now, report)
        closed = self._close_settled(tasks, facts, escalations, report)
        order, open_escalations = self._review_order(tasks, samples, escalations, settlements)
        self._rank_review(order, report)
        self._tabs(order, open_escalations)
        if self.store.cursor(self.project_id, "overlap_first") != "yes":
            self.client.set_overlap_first(self.project_id, True)
            self.store.set_cursor(self.project_id, "overlap_first", "yes")
        report.review = {
            "mode": how.mode,
            "decided": len(decisions),
            "sampled": sum(d.sampled for d in decisions),
            "reopened": reopened,
            "assigned": assigned,
            "closed": closed,
            "escalated": len(opened),
            "settled": len(settled),
            "lots_judged": judged,
        }

    def task_facts(self) -> list[TaskFacts]:
        """The store's tasks as the review and the metrics see them (see :func:`review_facts`)."""
        experts = self._expert_ids()
        self.store.set_cursor(self.project_id, "experts", json.dumps(sorted(experts)))
        return review_facts(self.store, self.project_id, self.plan, experts, self.clock())

    def review_states(self) -> dict[tuple[int, Tier], rv.SwitchState]:
        """Each (annotator, tier)'s switching state (see :func:`switch_states`)."""
        return switch_states(self.store, self.project_id, self.plan)

    def _expert_ids(self) -> set[int]:
        wanted = {e.lower() for e in self.plan.review.escalation.experts}
        if not wanted or not self.plan.review.enabled:
            return set()
        users = self._users()
        return {users[e] for e in wanted if e in users}

    def _users(self) -> dict[str, int]:
        """The organization's members (email -> id), read once per pass."""
        if self._members is None:
            self._members = self.client.list_users()
        return self._members

    def _settle(self, fact: TaskFacts) -> rv.Settlement:
        done = [r for r in fact.ratings if not r.skipped and r.annotator is not None]
        opinions = [
            rv.Opinion(r.annotator, r.classes, r.at, r.expert)
            for r in done
            if r.annotator is not None
        ]
        involved = set().union(*(r.classes for r in done), self._likely(fact))
        rare = any(not self.plan.classes[c].easy for c in involved if c in self.plan.classes)
        return rv.settle(opinions, self.plan, rare=rare, escalated=fact.escalated_at is not None)

    def _likely(self, fact: TaskFacts) -> set[str]:
        floor = self.plan.review.predicted_min_score
        return {c for c, p in fact.probs.items() if p >= floor}

    @staticmethod
    def _first(fact: TaskFacts) -> Rating | None:
        done = [r for r in fact.ratings if not r.skipped and r.annotator is not None]
        return min(done, key=lambda r: r.at) if done else None

    def _new_items(self, facts: list[TaskFacts], samples: dict[int, SampleRow]) -> list[rv.Item]:
        items = []
        for fact in facts:
            first = self._first(fact)
            if fact.task_id in samples or first is None or first.annotator is None:
                continue
            annotators = {
                r.annotator for r in fact.ratings if not r.skipped and r.annotator is not None
            }
            items.append(
                rv.Item(
                    fact.task_id,
                    first.annotator,
                    first.at,
                    first.classes,
                    fact.probs,
                    len(annotators),
                )
            )
        return items

    @staticmethod
    def _lot_sizes(samples: dict[int, SampleRow]) -> dict[tuple[int, Tier, str], int]:
        return dict(Counter((s.annotator, Tier(s.tier), s.week) for s in samples.values()))

    def _judge_lots(
        self,
        facts: list[TaskFacts],
        samples: dict[int, SampleRow],
        settlements: dict[int, rv.Settlement],
        now: datetime,
    ) -> int:
        """Judge the lots whose week ended ``review.lot_grace_hours`` ago, that have reviewed
        items and no verdict yet."""
        done = {(lot.annotator, lot.tier, lot.week) for lot in self.store.lots(self.project_id)}
        by_id = {f.task_id: f for f in facts}
        weeks = {s.week for s in samples.values()}
        due = {w for w in weeks if rv.lot_due(w, now, self.plan)}
        lots: dict[tuple[int, str, str], list[SampleRow]] = defaultdict(list)
        for sample in samples.values():
            key = (sample.annotator, sample.tier, sample.week)
            if key not in done and sample.week in due:
                lots[key].append(sample)
        states = self.review_states()
        verdicts = []
        for (annotator, tier_name, week), members in sorted(lots.items(), key=lambda kv: kv[0][2]):
            tier = Tier(tier_name)
            defects = []
            for sample in members:
                fact = by_id.get(sample.task_id)
                first = self._first(fact) if fact else None
                if fact is None or first is None or first.annotator is None:
                    continue
                opinion = rv.Opinion(first.annotator, first.classes, first.at, first.expert)
                found = rv.defect(opinion, settlements[fact.task_id])
                if found is not None:
                    defects.append(found)
            state = states.get((annotator, tier), rv.initial_switch(tier).state)
            aql = self.plan.review.aql.of(tier)
            verdict = rv.judge_lot(annotator, tier, week, len(members), defects, aql, state)
            if verdict is not None:
                verdicts.append(
                    LotRow(
                        annotator,
                        tier.value,
                        week,
                        verdict.size,
                        verdict.reviewed,
                        verdict.defects,
                        verdict.acceptance,
                        verdict.passed,
                        state.value,
                        now,
                    )
                )
        self.store.put_lots(self.project_id, verdicts)
        return len(verdicts)

    def _reopen(
        self,
        tasks: dict[int, TaskRow],
        samples: dict[int, SampleRow],
        escalations: dict[int, EscalationRow],
        settlements: dict[int, rv.Settlement],
        report: PassReport,
        *,
        second: bool = True,
        reviewers_only: dict[int, int] | None = None,
    ) -> int:
        """Raise ``overlap`` where an escalated task, or (``second``) a sampled one, needs
        another annotator. ``reviewers_only``: per task, how many opinions came from reviewers
        who did not annotate it (review API)."""
        reviewers_only = reviewers_only or {}
        wanted: dict[int, int] = {}
        for task_id, sample in samples.items():
            settlement = settlements.get(task_id)
            if second and sample.sampled and settlement and settlement.awaiting_review:
                wanted[task_id] = 2
        for task_id, row in escalations.items():
            settlement = settlements.get(task_id)
            if row.status == rv.Status.escalated.value and settlement and not settlement.settled:
                # overlap counts annotations; reviewers' verdicts count as opinions too
                target = settlement.want - reviewers_only.get(task_id, 0)
                wanted[task_id] = max(wanted.get(task_id, 0), target)
        reopened = 0
        for task_id, overlap in sorted(wanted.items()):
            task = tasks.get(task_id)
            if task is None or task.overlap >= overlap:
                continue
            try:
                self.client.set_task_overlap(task_id, overlap)
            except LabelStudioError as exc:
                report.problems.append(
                    f"task {task_id}: could not ask for a second annotator: {exc}"
                )
                continue
            self.store.upsert_tasks(
                self.project_id, [replace(task, overlap=overlap, is_labeled=False)]
            )
            reopened += 1
        return reopened

    def _close_settled(
        self,
        tasks: dict[int, TaskRow],
        facts: list[TaskFacts],
        escalations: dict[int, EscalationRow],
        report: PassReport,
    ) -> int:
        """Take the extra annotator requests back from escalations that are settled.

        An expert's review (review API) can settle an item while Label Studio still waits for
        the annotations ``overlap`` asked for; lowering ``overlap`` to the annotators the task
        has closes it, so nobody is served a task that is already decided.
        """
        annotators = {
            f.task_id: len({r.annotator for r in f.ratings if not r.review and not r.skipped})
            for f in facts
        }
        closed = 0
        for task_id, row in sorted(escalations.items()):
            task = tasks.get(task_id)
            if task is None or row.status not in SETTLED_STATUSES:
                continue
            have = max(1, annotators.get(task_id, 0))
            if task.overlap <= have:
                continue
            try:
                self.client.set_task_overlap(task_id, have)
            except LabelStudioError as exc:
                report.problems.append(f"task {task_id}: settled, but still open: {exc}")
                continue
            self.store.upsert_tasks(self.project_id, [replace(task, overlap=have, is_labeled=True)])
            closed += 1
        return closed

    def _pull_reviews(self, report: PassReport) -> None:
        """Read the reviewers' verdicts from the review API into the store."""
        owner = {a.annotation_id: a.task_id for a in self.store.annotations(self.project_id)}
        reviews = self.client.list_reviews(self.project_id)
        rows = [
            ReviewRow(
                r.id,
                r.annotation_id,
                owner[r.annotation_id],
                r.reviewer,
                r.accepted,
                r.labels,
                r.created_at,
            )
            for r in reviews
            if r.annotation_id in owner
        ]
        unknown = len(reviews) - len(rows)
        if unknown:
            report.problems.append(
                f"{unknown} reviews are of annotations the store does not hold (deleted, or not "
                "pulled yet); they count once the annotation is pulled"
            )
        self.store.replace_reviews(self.project_id, rows)

    def _reviewer_ids(self, report: PassReport) -> list[int]:
        review = self.plan.review
        wanted = [e.lower() for e in (review.reviewers or review.escalation.experts)]
        if not wanted:
            return []
        users = self._users()
        missing = [e for e in wanted if e not in users]
        if missing:
            report.problems.append(
                f"reviewers not in the organization: {', '.join(missing)} (invite them)"
            )
        return sorted({users[e] for e in wanted if e in users})

    def _assign(
        self,
        tasks: dict[int, TaskRow],
        samples: dict[int, SampleRow],
        settlements: dict[int, rv.Settlement],
        now: datetime,
        report: PassReport,
    ) -> int:
        """Assign sampled tasks still waiting for review to the plan's reviewers (review API)."""
        done = self.store.assignments(self.project_id)
        waiting = sorted(
            t
            for t, s in samples.items()
            if s.sampled
            and t in tasks
            and t not in done
            and settlements.get(t)
            and settlements[t].awaiting_review
        )
        if not waiting:
            return 0
        reviewers = self._reviewer_ids(report)
        if not reviewers:
            report.problems.append(
                f"{len(waiting)} sampled tasks wait in the {self.REVIEW_TAB!r} tab unassigned: "
                "name review.reviewers (or escalation.experts) in the plan to assign them"
            )
            return 0
        # recorded first: an assignment whose outcome is unknown is never sent twice
        self.store.put_assignments(self.project_id, waiting, reviewers, now)
        try:
            self.client.assign_for_review(self.project_id, waiting, reviewers)
        except AssignmentRefused as exc:
            self.store.delete_assignments(self.project_id, waiting)
            report.problems.append(f"could not assign {len(waiting)} tasks for review: {exc}")
            return 0
        except LabelStudioError as exc:
            report.problems.append(
                f"assigning tasks {waiting} for review: outcome unknown ({exc}); not sent again, "
                "so that nobody is assigned twice: check their reviewers in Label Studio"
            )
            return 0
        return len(waiting)

    def _review_order(
        self,
        tasks: dict[int, TaskRow],
        samples: dict[int, SampleRow],
        escalations: dict[int, EscalationRow],
        settlements: dict[int, rv.Settlement],
    ) -> tuple[list[int], list[int]]:
        """What waits for review, riskiest first — open escalations by age, then sampled tasks
        by tier (must-not-miss first) and inclusion probability — and the open escalations."""
        rank = {tier.value: i for i, tier in enumerate(TIER_ORDER)}
        open_escalations = sorted(
            (
                t
                for t, row in escalations.items()
                if row.status == rv.Status.escalated.value and t in tasks
            ),
            key=lambda t: (escalations[t].opened_at, t),
        )
        awaiting = sorted(
            (
                t
                for t, s in samples.items()
                if s.sampled
                and t in tasks
                and settlements.get(t)
                and settlements[t].awaiting_review
            ),
            key=lambda t: (rank[samples[t].tier], -samples[t].probability, t),
        )
        return list(dict.fromkeys([*open_escalations, *awaiting])), open_escalations

    def _rank_review(self, order: list[int], report: PassReport) -> None:
        """Give the tasks waiting for review queue scores in risk order (fewest writes).

        The Data Manager sorts a tab by one column; ``predictions_score`` is the score of the
        prediction of the project's model version, the queue's. So the "Review queue" tab sorts
        by it, and Label Studio, which serves re-opened tasks (``overlap > 1``) first, serves
        them to second annotators in the same order. The push step leaves the ranked tasks
        alone (cursor ``review_ranked``). A task's queue ``lane`` is kept: it says which lane
        served it, which the planner counts; a task that had no queue prediction gets the lane
        ``review``, which no plan lane counts.
        """
        self.store.set_cursor(self.project_id, "review_ranked", json.dumps(order))
        if not order:
            return
        written = self.store.queue(self.project_id)
        current = {t: written[t].score for t in order if t in written}
        moves = reconcile(order, current)
        version = self.settings.queue_version
        rows = []
        for task_id, score in moves.update.items():
            try:
                self.client.update_prediction(written[task_id].prediction_id, score=score)
            except LabelStudioError as exc:
                report.problems.append(f"task {task_id}: review rank not written: {exc}")
                continue
            rows.append(replace(written[task_id], score=score))
        for task_id, score in moves.create.items():
            created = self._create_one(NewPrediction(task_id, score, version, []), report)
            if created:
                reason = "waiting for review (risk order)"
                rows.append(QueueRow(task_id, created, version, score, REVIEW_LANE, reason))
        self.store.put_queue(self.project_id, rows)

    def _tabs(self, order: list[int], open_escalations: list[int]) -> None:
        """Keep the "Review queue" and "Escalations" tabs showing what waits, riskiest first."""
        wanted = {self.REVIEW_TAB: order, self.ESCALATIONS_TAB: open_escalations}
        for title, ids in wanted.items():
            cursor = f"review_tab:{title}"
            if self.store.cursor(self.project_id, cursor) == json.dumps(ids):
                continue  # each tab is rewritten only when its own content changed
            filters = {
                "conjunction": "and",
                "items": [
                    {
                        "filter": "filter:tasks:id",
                        "operator": "in_list",
                        "type": "Number",
                        "value": ids or [0],  # no task has id 0: an empty tab, not every task
                    }
                ],
            }
            self.client.upsert_view(
                self.project_id, title, filters=filters, ordering=["tasks:predictions_score"]
            )
            self.store.set_cursor(self.project_id, cursor, json.dumps(ids))

    # ---------------------------------------------------------------- 8. metrics

    def metrics(self, project: Project, report: PassReport) -> Metrics:
        """Compute the weekly metrics and alarms, publish them for Prometheus, and write the
        block into the project description (and the annotators' quota status) when asked."""
        metrics = compute(
            self.task_facts(),
            self.plan,
            self.clock(),
            states=self.review_states(),
            review_by=self.review_how.reason if self.review_how else "",
        )
        self.last_metrics = metrics
        self.store.set_cursor(self.project_id, "plan", self.plan.model_dump_json())
        report.alarms = [alarm.message for alarm in metrics.alarms]
        if self.exposition is not None:
            self.exposition.publish(prometheus_text(metrics, self.project_id))
        review = self.plan.review
        if not review.enabled or not self._write_back_due(metrics):
            return metrics
        wrote = False
        if review.write_back:
            description = merge_description(project.description, metrics)
            if description != project.description:
                self.client.update_project(self.project_id, description=description)
                wrote = True
        if review.annotator_quota_status:
            instructions = merge_instructions(project.expert_instruction, metrics)
            if instructions != project.expert_instruction or not project.show_instruction:
                self.client.update_project(
                    self.project_id, expert_instruction=instructions, show_instruction=True
                )
                wrote = True
        if wrote:
            self.store.set_cursor(self.project_id, "metrics_written_at", self.clock().isoformat())
            self.store.set_cursor(self.project_id, "metrics_alarms", self._alarm_key(metrics))
        return metrics

    @staticmethod
    def _alarm_key(metrics: Metrics) -> str:
        return json.dumps(sorted(alarm.message for alarm in metrics.alarms))

    def _write_back_due(self, metrics: Metrics) -> bool:
        """Whether the description block and quota status may be rewritten now: at most every
        ``metrics_every`` seconds (a pass runs on every webhook), at once when the alarms changed."""
        last = self.store.cursor(self.project_id, "metrics_written_at")
        if last is None:
            return True
        if self.store.cursor(self.project_id, "metrics_alarms") != self._alarm_key(metrics):
            return True
        waited = (self.clock() - datetime.fromisoformat(last)).total_seconds()
        return waited >= self.settings.metrics_every or waited < 0

    # ---------------------------------------------------------------- the loop

    def run(
        self,
        *,
        interval: float,
        passes: int | None = None,
        on_pass: Callable[[PassReport], None] | None = None,
    ) -> None:
        """Pass after pass: at once when a webhook arrives, else every ``interval`` seconds.

        A pass that fails because Label Studio is unreachable is retried with growing pauses
        (up to ten intervals); the state is read back before the next write.
        """
        done, pause = 0, interval
        while passes is None or done < passes:
            try:
                report = self.run_pass()
            except LabelStudioError as exc:
                log.error("pass failed: %s; retrying in %.0f s", exc, pause)
                self.changes.wake.wait(pause)
                pause = min(pause * 2, interval * 10)
                continue
            pause = interval
            done += 1
            if on_pass is not None:
                on_pass(report)
            if passes is None or done < passes:
                self.changes.wake.wait(interval)


def disable(
    client: LabelStudioClient, store: Store, project_id: int, queue_version: str = QUEUE_VERSION
) -> dict[str, Any]:
    """Give the project back: its previous sampling and model version, queue predictions removed.

    The project is pointed away from the queue first, so annotators never meet a half-removed
    queue; then every prediction of the queue version is deleted in one call.
    """
    sampling = store.cursor(project_id, "previous_sampling") or "Sequential sampling"
    previous_version = store.cursor(project_id, "previous_model_version") or ""
    client.update_project(project_id, sampling=sampling)
    if previous_version and previous_version != queue_version:
        client.update_project(project_id, model_version=previous_version)
    deleted = client.delete_model_version(project_id, queue_version)
    with store.transaction():
        store.remove_queue(project_id, list(store.queue(project_id)))
        for name in ("previous_sampling", "previous_model_version", "enabled"):
            store.set_cursor(project_id, name, "")
    outcome = {
        "sampling": sampling,
        "model_version": previous_version,
        "deleted_predictions": deleted,
    }
    store.audit(project_id, "disable", outcome)
    return outcome


def task_row(task: Task) -> TaskRow:
    """What the store keeps of a Label Studio task."""
    return TaskRow(
        task.id, task.data, task.created_at, task.updated_at, task.is_labeled, task.overlap
    )


def annotation_rows_of(task: Task) -> list[AnnotationRow]:
    """What the store keeps of a task's annotations: who, which labels, how long, skipped or not."""
    return [
        AnnotationRow(
            a.id,
            task.id,
            a.completed_by,
            labels_of(a.result),
            a.lead_time,
            a.was_cancelled,
            a.created_at,
            a.updated_at,
        )
        for a in task.annotations
    ]


def task_record(
    task: TaskRow,
    annotations: Sequence[AnnotationRow],
    score: ScoreRow | None,
    plan: Plan,
    lane: str | None = None,
) -> dict[str, Any]:
    """One task as a planner record: class scores, source values, duplicate group, labels.

    A labeled task also carries the queue ``lane`` that served it (when the queue did), so the
    planner can keep each lane's share across re-plans within the week.
    """
    label_map = plan.label_map()
    probs: dict[str, float] = {}
    for label, p in (score.probs if score else {}).items():
        name = label_map.get(label)
        if name is not None:
            probs[name] = min(1.0, probs.get(name, 0.0) + float(p))
    record: dict[str, Any] = {
        "id": task.task_id,
        "scores": probs,
        "source": {key: _source_value(task.data.get(key)) for key in plan.sources.keys},
        "dup_group": score.dup_group if score else None,
        "status": "labeled" if task.is_labeled or annotations else "unlabeled",
    }
    if record["status"] == "labeled":
        times = [a.created_at for a in annotations if a.created_at is not None]
        labels = [label for a in annotations for label in a.labels]
        leads = [a.lead_time for a in annotations if a.lead_time is not None]
        record["labels"] = list(dict.fromkeys(labels))
        # when it was first labeled; a task Label Studio marks labeled without annotations we
        # know of falls back to its last update
        record["labeled_at"] = min(times, default=task.updated_at or datetime.now(UTC)).isoformat()
        record["lead_time"] = statistics.median(leads) if leads else None
        if lane is not None:
            record["lane"] = lane
    return record


def _source_value(value: Any) -> str | int | float | None:
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value  # type: ignore[no-any-return]
    return str(value)


# ---------------------------------------------------------------- review and metrics inputs


def review_facts(
    store: Store, project_id: int, plan: Plan, experts: set[int], now: datetime
) -> list[TaskFacts]:
    """The store's tasks with plan classes instead of labels, their sampling and escalation:
    what :mod:`labelplan.review` and :mod:`labelplan.metrics` work on. ``experts`` are the
    user ids whose annotations settle an item."""
    label_map = plan.label_map()
    scores = {s.task_id: s for s in store.scores(project_id)}
    samples = store.samples(project_id)
    escalations = store.escalations(project_id)
    by_task: dict[int, list[AnnotationRow]] = defaultdict(list)
    by_id: dict[int, AnnotationRow] = {}
    for annotation in store.annotations(project_id):
        by_task[annotation.task_id].append(annotation)
        by_id[annotation.annotation_id] = annotation
    reviewed: dict[int, list[Rating]] = defaultdict(list)
    for review in store.reviews(project_id):
        rating = review_rating(review, by_id.get(review.annotation_id), label_map, experts, now)
        if rating is not None:
            reviewed[review.task_id].append(rating)

    def classes(labels: Iterable[str]) -> frozenset[str]:
        return frozenset(label_map[x] for x in labels if x in label_map)

    facts = []
    for task in store.tasks(project_id):
        ratings = tuple(
            Rating(
                a.completed_by,
                classes(a.labels),
                a.created_at or task.updated_at or now,
                a.lead_time,
                a.was_cancelled,
                a.completed_by in experts,
            )
            for a in sorted(by_task.get(task.task_id, []), key=lambda a: a.annotation_id)
        ) + tuple(reviewed.get(task.task_id, ()))
        score = scores.get(task.task_id)
        probs: dict[str, float] = {}
        for label, p in (score.probs if score else {}).items():
            name = label_map.get(label)
            if name is not None:
                probs[name] = min(1.0, probs.get(name, 0.0) + float(p))
        sample = samples.get(task.task_id)
        escalation = escalations.get(task.task_id)
        facts.append(
            TaskFacts(
                task.task_id,
                ratings,
                probs,
                sampled=bool(sample and sample.sampled),
                probability=sample.probability if sample else None,
                escalated_at=escalation.opened_at if escalation else None,
            )
        )
    return facts


def _reviewers_only(fact: TaskFacts) -> int:
    """How many of a task's opinions come from reviewers who did not annotate it."""
    annotators = {r.annotator for r in fact.ratings if not r.review}
    return len({r.annotator for r in fact.ratings if r.review} - annotators)


def review_rating(
    review: ReviewRow,
    annotation: AnnotationRow | None,
    label_map: dict[str, str],
    experts: set[int],
    now: datetime,
) -> Rating | None:
    """A reviewer's verdict (Enterprise review API) as one more opinion on the task.

    Accepting an annotation is agreeing with its classes. Rejecting it is disagreeing: the
    reviewer's answer is their corrected result when it differs from what the annotation holds
    now, else no class at all (the original answer is not known to be right; on a rare class
    that escalates the item, and even an expert's bare rejection settles nothing). A review by the annotation's own author, or of an annotation the
    store does not hold, is no opinion.
    """
    if annotation is None or review.reviewer is None or review.reviewer == annotation.completed_by:
        return None
    mine = frozenset(label_map[x] for x in annotation.labels if x in label_map)
    fixed = frozenset(label_map[x] for x in review.labels or () if x in label_map)
    if review.accepted:
        # accepted with a result that differs from the annotation: accepted after a fix
        answer = fixed if review.labels and fixed != mine else mine
    else:
        answer = fixed if fixed and fixed != mine else frozenset()
    return Rating(
        review.reviewer,
        answer,
        review.created_at or annotation.updated_at or now,
        None,
        False,
        review.reviewer in experts and bool(answer),  # a bare rejection decides nothing
        review=True,
    )


def switch_states(
    store: Store, project_id: int, plan: Plan
) -> dict[tuple[int, Tier], rv.SwitchState]:
    """Each (annotator, tier)'s review switching state, replayed from the judged lots."""
    verdicts: dict[tuple[int, Tier], list[bool]] = defaultdict(list)
    for lot in store.lots(project_id):
        verdicts[(lot.annotator, Tier(lot.tier))].append(lot.passed)
    rules = plan.review.switching
    return {key: rv.replay(key[1], passed, rules).state for key, passed in verdicts.items()}
