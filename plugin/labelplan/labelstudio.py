"""The Label Studio adapter: the only code in labelplan that talks to Label Studio.

Built on ``label_studio_sdk.LabelStudio`` (2.1.x), which handles both kinds of API key: a
legacy token and a personal access token (a JWT refresh token it exchanges for short-lived
access tokens itself).

Safety of writes, one rule per kind (see ``docs/labelstudio.md``):

* Reads, PATCHes and DELETEs are idempotent: they are retried with tenacity on connection
  errors, timeouts, 429 and 5xx.
* Creates (``POST``) are never blindly retried. The SDK's own retry loop is switched off
  (``max_retries=0``) because it would repeat a POST after a 5xx. When a create fails in a way
  that leaves its outcome unknown, the adapter first looks for what it tried to create (a view
  by title, a webhook by URL, predictions by task, version and score) and sends only what is
  missing, once.
* Everything else returns a typed value (dataclasses below) so that no SDK type leaks into the
  rest of the code.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import requests
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.label_interface import LabelInterface
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from labelplan.settings import LabelStudioSettings

log = logging.getLogger(__name__)

SAMPLING_MODES = ("Sequential sampling", "Uniform sampling", "Uncertainty sampling")
"""The values Label Studio accepts for a project's ``sampling``."""

WEBHOOK_EVENTS = (
    "TASKS_CREATED",
    "TASKS_DELETED",
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
)
"""The events labelplan listens to by default (Label Studio sends none for task edits)."""

EXPORT_ABOVE = 0.3
"""``load_tasks`` uses an export snapshot when more than this share of tasks has annotations."""

DEFAULT_PREDICTION_CHUNK = 5000
"""Predictions per import call. Each call recounts every task of the project, so big batches."""

_T = TypeVar("_T")


# --------------------------------------------------------------------------- errors


class LabelStudioError(RuntimeError):
    """Something went wrong talking to Label Studio; the message says what to do next."""


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio could not be reached (or kept failing with 5xx) after retries."""


class AuthenticationFailed(LabelStudioError):
    """Label Studio rejected the API key."""


class ProjectNotFound(LabelStudioError):
    """No project with that id is visible to this API key."""


class NoClassControl(LabelStudioError):
    """The label config has no control with classes (Choices, *Labels, Taxonomy)."""


class InvalidPrediction(LabelStudioError, ValueError):
    """A prediction would be silently dropped by Label Studio; rejected before sending."""


class AssignmentRefused(LabelStudioError):
    """Label Studio refused a review assignment (4xx): nothing was assigned."""


class PredictionsRejected(LabelStudioError):
    """Label Studio created fewer predictions than were sent."""

    def __init__(self, message: str, sent: int, created: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.created = created


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Control:
    """One control tag of a label config that carries classes."""

    name: str
    tag: str
    to_name: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """The classes a project can produce: control name -> label values, plus the data keys."""

    controls: dict[str, Control]
    data_keys: tuple[str, ...] = ()

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label value of every class control, in config order, without repeats."""
        seen: dict[str, None] = {}
        for control in self.controls.values():
            for label in control.labels:
                seen.setdefault(label, None)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "controls": {
                c.name: {"tag": c.tag, "to_name": list(c.to_name), "labels": list(c.labels)}
                for c in self.controls.values()
            },
            "data_keys": list(self.data_keys),
        }


@dataclass(frozen=True)
class Project:
    id: int
    title: str
    label_config: str
    taxonomy: Taxonomy
    sampling: str
    model_version: str
    description: str
    expert_instruction: str
    show_instruction: bool
    maximum_annotations: int


@dataclass(frozen=True)
class Annotation:
    id: int
    task_id: int
    completed_by: int | None
    result: list[dict[str, Any]]
    lead_time: float | None
    was_cancelled: bool
    ground_truth: bool
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Prediction:
    id: int
    task_id: int
    model_version: str
    score: float | None
    result: list[dict[str, Any]]


@dataclass(frozen=True)
class Task:
    id: int
    data: dict[str, Any]
    meta: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    is_labeled: bool
    overlap: int
    total_annotations: int
    cancelled_annotations: int
    annotations: tuple[Annotation, ...] = ()
    predictions: tuple[Prediction, ...] = ()


@dataclass(frozen=True)
class ReviewApi:
    """Whether a server offers Label Studio Enterprise's review API for a project, and why."""

    available: bool
    edition: str
    """What ``/api/version`` calls the server ("Community", "Enterprise"...)."""
    reason: str


@dataclass(frozen=True)
class AnnotationReview:
    """A reviewer's accept or reject of one annotation (Enterprise ``/api/annotation-reviews/``).

    ``labels`` are the labels of the reviewer's corrected result when the review carries one.
    """

    id: int
    annotation_id: int
    reviewer: int | None
    accepted: bool
    labels: tuple[str, ...] | None
    created_at: datetime | None


def review_from_json(raw: dict[str, Any]) -> AnnotationReview | None:
    """One review as the SDK's ``AnnotationReview`` type describes it; ``None`` while it has no
    verdict yet (``accepted`` missing)."""
    accepted = raw.get("accepted")
    if accepted is None:
        return None
    result = raw.get("result")
    return AnnotationReview(
        id=int(raw["id"]),
        annotation_id=int(raw["annotation"]),
        reviewer=_user_id(raw.get("created_by")),
        accepted=bool(accepted),
        labels=labels_of(result) if isinstance(result, list) and result else None,
        created_at=_when(raw.get("created_at")),
    )


def score_problem(score: object) -> str | None:
    """Why Label Studio would drop a prediction with this score (it keeps only [0, 1]), or None."""
    if not isinstance(score, int | float) or isinstance(score, bool):
        return f"score must be a number in [0, 1], got {score!r}"
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return f"score must lie in [0, 1], got {score!r}"
    return None


@dataclass(frozen=True)
class NewPrediction:
    """A prediction to write. ``score`` must lie in [0, 1] (Label Studio drops others silently)."""

    task_id: int
    score: float
    model_version: str
    result: list[dict[str, Any]] = field(default_factory=list)

    def problem(self) -> str | None:
        """Why Label Studio would drop this prediction, or None if it is fine."""
        if not isinstance(self.task_id, int) or isinstance(self.task_id, bool) or self.task_id <= 0:
            return f"task id must be a positive integer, got {self.task_id!r}"
        problem = score_problem(self.score)
        if problem:
            return problem
        if not self.model_version:
            return "model_version must not be empty"
        if not isinstance(self.result, list):
            return f"result must be a list of regions, got {type(self.result).__name__}"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task_id,
            "score": float(self.score),
            "model_version": self.model_version,
            "result": self.result,
        }


# --------------------------------------------------------------------------- parsing


def _when(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _filter_time(moment: datetime) -> str:
    """A time as the Data Manager's Datetime filter parses it: UTC, ``%Y-%m-%dT%H:%M:%S.%fZ``."""
    if moment.tzinfo is None:
        raise LabelStudioError(f"give a timezone-aware time (e.g. with tzinfo=UTC), got {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _user_id(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("id")
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def annotation_from_json(raw: dict[str, Any], task_id: int) -> Annotation:
    lead = raw.get("lead_time")
    return Annotation(
        id=int(raw["id"]),
        task_id=int(raw.get("task") or task_id),
        completed_by=_user_id(raw.get("completed_by")),
        result=list(raw.get("result") or []),
        lead_time=float(lead) if lead is not None else None,
        was_cancelled=bool(raw.get("was_cancelled", False)),
        ground_truth=bool(raw.get("ground_truth", False)),
        created_at=_when(raw.get("created_at")),
        updated_at=_when(raw.get("updated_at")),
    )


def prediction_from_json(raw: dict[str, Any], task_id: int | None = None) -> Prediction:
    score = raw.get("score")
    return Prediction(
        id=int(raw["id"]),
        task_id=int(raw.get("task") or task_id or 0),
        model_version=str(raw.get("model_version") or ""),
        score=float(score) if score is not None else None,
        result=list(raw.get("result") or []),
    )


def task_from_json(raw: dict[str, Any]) -> Task:
    """A task from the JSON of the tasks API or of an export snapshot (the same shape)."""
    task_id = int(raw["id"])
    annotations = tuple(
        annotation_from_json(a, task_id)
        for a in raw.get("annotations") or []
        if isinstance(a, dict)
    )
    predictions = tuple(
        prediction_from_json(p, task_id)
        for p in raw.get("predictions") or []
        if isinstance(p, dict)
    )
    total = raw.get("total_annotations")
    cancelled = raw.get("cancelled_annotations")
    return Task(
        id=task_id,
        data=dict(raw.get("data") or {}),
        meta=dict(raw.get("meta") or {}),
        created_at=_when(raw.get("created_at")),
        updated_at=_when(raw.get("updated_at")),
        is_labeled=bool(raw.get("is_labeled", False)),
        overlap=int(raw.get("overlap") or 1),
        total_annotations=int(total)
        if total is not None
        else sum(not a.was_cancelled for a in annotations),
        cancelled_annotations=int(cancelled)
        if cancelled is not None
        else sum(a.was_cancelled for a in annotations),
        annotations=annotations,
        predictions=predictions,
    )


def choices_result(control: Control, labels: Sequence[str]) -> list[dict[str, Any]]:
    """An annotation/prediction ``result`` choosing ``labels`` in a Choices control."""
    unknown = [label for label in labels if label not in control.labels]
    if unknown:
        raise LabelStudioError(
            f"{unknown} are not labels of control {control.name!r}; allowed: {', '.join(control.labels)}"
        )
    return [
        {
            "from_name": control.name,
            "to_name": control.to_name[0] if control.to_name else "",
            "type": control.tag.lower(),
            "value": {control.tag.lower(): list(labels)},
        }
    ]


def labels_of(result: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """Every class label an annotation or prediction ``result`` chooses, in order, once each.

    Reads ``value.choices`` and every ``value.*labels`` list (rectangles, polygons, spans…);
    Taxonomy paths count by their leaf.
    """
    found: dict[str, None] = {}
    for region in result:
        value = region.get("value") if isinstance(region, dict) else None
        if not isinstance(value, dict):
            continue
        for key, chosen in value.items():
            if key in ("choices", "taxonomy") or key.endswith("labels"):
                for item in chosen if isinstance(chosen, list) else []:
                    label = item[-1] if isinstance(item, list) and item else item
                    if isinstance(label, str):
                        found.setdefault(label, None)
    return tuple(found)


CLASS_CONTROL_TAGS = ("Choices", "Taxonomy")
"""Control tags that carry classes besides every ``*Labels`` tag."""


def parse_taxonomy(label_config: str, *, project_id: int | None = None) -> Taxonomy:
    """The class taxonomy of a label config: every Choices, Taxonomy or *Labels control.

    Raises :class:`NoClassControl` when there is none, since labelplan plans per class.
    """
    where = f"project {project_id}'s label config" if project_id is not None else "the label config"
    try:
        interface = LabelInterface(label_config)
    except Exception as exc:
        raise NoClassControl(f"{where} could not be parsed: {exc}") from exc
    controls: dict[str, Control] = {}
    for control in interface.controls:
        labels = tuple(str(v) for v in (getattr(control, "labels", None) or []))
        is_class_tag = control.tag in CLASS_CONTROL_TAGS or control.tag.endswith("Labels")
        if is_class_tag and labels:
            controls[control.name] = Control(
                name=control.name,
                tag=control.tag,
                to_name=tuple(control.to_name or ()),
                labels=labels,
            )
    if not controls:
        found = ", ".join(f"<{c.tag} name={c.name!r}>" for c in interface.controls) or "no controls"
        raise NoClassControl(
            f"{where} has no control with classes (found {found}). labelplan plans per class: add a "
            '<Choices name="label" toName="..."> with <Choice value="..."/> entries, or a '
            '<RectangleLabels>/<Labels> control with <Label value="..."/> entries.'
        )
    data_keys = tuple(
        dict.fromkeys(
            str(obj.value).lstrip("$")
            for obj in interface.objects
            if str(getattr(obj, "value", "")).startswith("$")
        )
    )
    return Taxonomy(controls=controls, data_keys=data_keys)


# --------------------------------------------------------------------------- retries


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError | requests.ConnectionError | requests.Timeout):
        return True
    return isinstance(exc, ApiError) and (exc.status_code or 0) in (408, 429, 500, 502, 503, 504)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "Label Studio call %s failed (%s: %s); retry %d",
        getattr(state.fn, "__name__", "?"),
        type(exc).__name__,
        _short(exc),
        state.attempt_number,
    )


def _short(exc: BaseException | None) -> str:
    if isinstance(exc, ApiError):
        return f"HTTP {exc.status_code}"
    return str(exc)[:200]


def safe_retry(seconds: float) -> Any:
    """Retry policy for calls that are safe to repeat (reads, PATCH, DELETE, find-then-create):
    exponential backoff with jitter on transient failures, for at most ``seconds``."""
    return retry(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(8) | stop_after_delay(seconds),
        wait=wait_exponential_jitter(multiplier=0.5, max=15),
        before_sleep=_log_retry,
        reraise=True,
    )


# --------------------------------------------------------------------------- the client


class LabelStudioClient:
    """Typed, retried access to one Label Studio server as one user.

    Create it with :func:`connect`, which checks the address and the key before anything else
    happens.
    """

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 60.0, retry_seconds: float = 120.0
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._retry = safe_retry(retry_seconds)
        self._http = requests.Session()
        self.calls: Counter[str] = Counter()
        """HTTP calls made so far, by method (retries included): the sync reports its cost from it."""
        try:
            self.sdk = LabelStudio(
                base_url=self.url, api_key=api_key, timeout=timeout, max_retries=0
            )
        except ApiError as exc:  # the SDK validates a JWT key's expiry up front
            raise AuthenticationFailed(
                f"the API key for {self.url} is not usable: {_detail(exc)}"
            ) from exc

    def __repr__(self) -> str:  # never show the key
        return f"LabelStudioClient(url={self.url!r})"

    # ---- calls and error translation

    def _call(
        self, what: str, fn: Callable[[], _T], *, not_found: LabelStudioError | None = None
    ) -> _T:
        """Run one SDK call, retried if transient, with errors translated into ours."""
        try:
            return self._retry(fn)()
        except ApiError as exc:
            raise self._translate(what, exc, not_found) from exc
        except (httpx.TransportError, requests.RequestException) as exc:
            raise LabelStudioUnavailable(
                f"could not reach Label Studio at {self.url} to {what}: {exc}. Is the server running "
                "and LABEL_STUDIO_URL right?"
            ) from exc

    def _call_once(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one SDK call that must not be repeated blindly; errors translated."""
        try:
            return fn()
        except ApiError as exc:
            raise self._translate(what, exc, None) from exc

    def _translate(
        self, what: str, exc: ApiError, not_found: LabelStudioError | None
    ) -> LabelStudioError:
        status = exc.status_code or 0
        if status == 401:
            return AuthenticationFailed(
                f"Label Studio at {self.url} rejected the API key ({_detail(exc)}). Use a personal access "
                "token or legacy token from Account & Settings in LABEL_STUDIO_API_KEY."
            )
        if status == 403:
            return AuthenticationFailed(
                f"this API key may not {what} ({_detail(exc)}): use an admin's key"
            )
        if status == 404 and not_found is not None:
            return not_found
        if status >= 500 or status in (408, 429):
            return LabelStudioUnavailable(
                f"Label Studio kept failing to {what}: HTTP {status} {_detail(exc)}"
            )
        return LabelStudioError(f"Label Studio refused to {what}: HTTP {status} {_detail(exc)}")

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP call with this client's auth (the SDK's headers, so a PAT is refreshed).

        Every call to Label Studio goes through here, so ``calls`` counts them by method.
        """
        headers = dict(self.sdk._client_wrapper.get_headers())  # resolves a PAT to an access token
        headers.update(kwargs.pop("headers", {}))
        self.calls[method] += 1
        response = self._http.request(
            method, f"{self.url}{path}", headers=headers, timeout=self.timeout, **kwargs
        )
        if response.status_code >= 400:
            body: Any
            try:
                body = response.json()
            except ValueError:
                body = response.text[:500]
            raise ApiError(
                status_code=response.status_code, headers=dict(response.headers), body=body
            )
        return response

    # ---- who and what

    def whoami(self) -> dict[str, Any]:
        """The user this key belongs to (id, email, active organization)."""
        return dict(
            self._call(
                "read the current user",
                lambda: self._request("GET", "/api/current-user/whoami").json(),
            )
        )

    def read_project(self, project_id: int) -> Project:
        """The project's settings and its class taxonomy; :class:`NoClassControl` if it has no classes."""
        missing = ProjectNotFound(
            f"project {project_id} does not exist on {self.url} or this API key cannot see it: check the "
            "id in the project's URL (/projects/<id>/)."
        )
        raw = self._call(
            f"read project {project_id}",
            lambda: self._request("GET", f"/api/projects/{project_id}/").json(),
            not_found=missing,
        )
        config = raw.get("label_config") or ""
        return Project(
            id=int(raw.get("id") or project_id),
            title=raw.get("title") or "",
            label_config=config,
            taxonomy=parse_taxonomy(config, project_id=project_id),
            sampling=str(raw.get("sampling") or ""),
            model_version=raw.get("model_version") or "",
            description=raw.get("description") or "",
            expert_instruction=raw.get("expert_instruction") or "",
            show_instruction=bool(raw.get("show_instruction")),
            maximum_annotations=int(raw.get("maximum_annotations") or 1),
        )

    def create_project(self, title: str, label_config: str, **settings: Any) -> int:
        """Create a project (not retried: a repeat would create a second one)."""
        raw = self._call_once(
            "create a project",
            lambda: self._request(
                "POST",
                "/api/projects/",
                json={"title": title, "label_config": label_config, **settings},
            ).json(),
        )
        return int(raw["id"])

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Import tasks (each ``{"data": {...}}`` or a bare data dict); returns their ids in order."""
        payload = [t if "data" in t else {"data": t} for t in tasks]
        raw = self._call_once(
            f"import tasks into project {project_id}",
            lambda: self._request(
                "POST",
                f"/api/projects/{project_id}/import",
                params={"return_task_ids": "true"},
                json=payload,
            ).json(),
        )
        return [int(i) for i in raw.get("task_ids") or []]

    # ---- reading tasks

    def iter_tasks(
        self, project_id: int, *, updated_since: datetime | None = None, page_size: int = 500
    ) -> Iterator[Task]:
        """Every task of the project with annotations and predictions, page by page.

        With ``updated_since``, only tasks whose ``updated_at`` is later (Label Studio bumps it
        when an annotation is created or changed). Pages are fetched by number, each retried.
        """
        items = []
        if updated_since is not None:
            items.append(
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": _filter_time(updated_since),
                }
            )
        for raw in self._pages(
            project_id, {"conjunction": "and", "items": items}, {"fields": "all"}, page_size
        ):
            yield task_from_json(raw)

    def load_tasks(self, project_id: int, *, page_size: int = 5000) -> Iterator[Task]:
        """Every task of the project, the cheapest way Label Studio offers: the first full load.

        Tasks nobody has touched come from a slim listing (id, data, flags: 2.7 s for 10k tasks,
        where an export snapshot takes 6.7 s and a full listing 16 s); only tasks with
        annotations or skips are read in full. When most tasks have annotations, an export
        snapshot is cheaper, and is used instead.
        """
        slim_fields = "id,data,created_at,updated_at,is_labeled,overlap,total_annotations,cancelled_annotations"
        slim = list(
            self._pages(
                project_id,
                {"conjunction": "and", "items": []},
                {"fields": "task_only", "include": slim_fields},
                page_size,
            )
        )
        touched = sum(
            1
            for t in slim
            if (t.get("total_annotations") or 0) + (t.get("cancelled_annotations") or 0)
        )
        if touched > EXPORT_ABOVE * max(len(slim), 1):
            yield from self.export_tasks(project_id)
            return
        full: dict[int, Task] = {}
        if touched:
            annotated = {
                "conjunction": "or",
                "items": [
                    {
                        "filter": f"filter:tasks:{column}",
                        "operator": "greater",
                        "type": "Number",
                        "value": 0,
                    }
                    for column in ("total_annotations", "cancelled_annotations")
                ],
            }
            full = {
                t.id: t
                for t in map(
                    task_from_json, self._pages(project_id, annotated, {"fields": "all"}, 500)
                )
            }
        for raw in slim:
            yield full.get(int(raw["id"])) or task_from_json(raw)

    def _pages(
        self, project_id: int, filters: dict[str, Any], fields: dict[str, str], page_size: int
    ) -> Iterator[dict[str, Any]]:
        """Raw tasks of the Data Manager listing, page by page (each page retried), in id order."""
        query = json.dumps({"filters": filters, "ordering": ["tasks:id"]})
        page = 1
        while True:
            params: dict[str, Any] = {
                "project": project_id,
                "page": page,
                "page_size": page_size,
                "query": query,
            }
            params.update(fields)
            try:
                body = self._call(
                    f"list tasks of project {project_id}",
                    lambda params=params: self._request("GET", "/api/tasks/", params=params).json(),  # type: ignore[misc]
                )
            except LabelStudioError as exc:
                if (
                    isinstance(exc.__cause__, ApiError)
                    and exc.__cause__.status_code == 404
                    and page > 1
                ):
                    return  # past the last page
                raise
            items = body.get("tasks", []) if isinstance(body, dict) else body
            yield from items
            total = body.get("total") if isinstance(body, dict) else None
            if len(items) < page_size or (total is not None and page * page_size >= int(total)):
                return
            page += 1

    def export_tasks(self, project_id: int, *, timeout: float = 1800.0) -> Iterator[Task]:
        """Every task of the project from an export snapshot: the fast path for the first full load.

        The snapshot is built by Label Studio in the background and streamed to a temporary
        file, so memory holds one parsed list, not the response plus the list.
        """
        request = {
            "title": "labelplan full load",
            "task_filter_options": {"only_with_annotations": False},
            # every annotation, skips included; predictions in full, not only their ids
            "annotation_filter_options": {"usual": True, "ground_truth": True, "skipped": True},
            "serialization_options": {"predictions": {"only_id": False}},
        }
        export = self._call_once(
            f"create an export of project {project_id}",
            lambda: self._request(
                "POST", f"/api/projects/{project_id}/exports/", json=request
            ).json(),
        )
        export_id = int(export["id"])
        try:
            deadline = time.monotonic() + timeout
            status = str(export.get("status") or "")
            while status not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise LabelStudioError(
                        f"export {export_id} of project {project_id} did not finish in {timeout:.0f} s"
                    )
                time.sleep(0.5)
                got = self._call(
                    "check an export",
                    lambda: self._request(
                        "GET", f"/api/projects/{project_id}/exports/{export_id}"
                    ).json(),
                )
                status = str(got.get("status") or "")
            if status == "failed":
                raise LabelStudioError(
                    f"Label Studio failed to build export {export_id} of project {project_id}"
                )
            with tempfile.TemporaryFile() as buffer:
                response = self._call(
                    "download an export",
                    lambda: self._request(
                        "GET",
                        f"/api/projects/{project_id}/exports/{export_id}/download",
                        params={"exportType": "JSON"},
                        stream=True,
                    ),
                )
                for chunk in response.iter_content(chunk_size=1 << 20):
                    buffer.write(chunk)
                buffer.seek(0)
                raw_tasks = json.load(buffer)
        finally:
            self._call("delete an export", lambda: self._delete_export(project_id, export_id))
        for raw in raw_tasks:
            yield task_from_json(raw)

    def _delete_export(self, project_id: int, export_id: int) -> None:
        try:
            self._request("DELETE", f"/api/projects/{project_id}/exports/{export_id}")
        except ApiError as exc:
            if exc.status_code != 404:
                raise

    # ---- predictions

    def write_predictions(
        self,
        project_id: int,
        predictions: Sequence[NewPrediction],
        *,
        chunk_size: int = DEFAULT_PREDICTION_CHUNK,
    ) -> int:
        """Create predictions in bulk; returns how many were created (always all of them).

        Every prediction is checked first: Label Studio silently drops one with a score outside
        [0, 1], so such a batch is refused before anything is sent (:class:`InvalidPrediction`).
        Each chunk is one import call, never repeated blindly: if the outcome of a call is unknown
        (connection lost, timeout, 5xx), the predictions already on the server are read back and
        only the missing ones are sent, once. If the server reports fewer created than sent,
        :class:`PredictionsRejected` says how many.
        """
        problems = [(i, p.problem()) for i, p in enumerate(predictions)]
        bad = [(i, why) for i, why in problems if why]
        if bad:
            shown = "; ".join(f"#{i} (task {predictions[i].task_id}): {why}" for i, why in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise InvalidPrediction(
                f"{len(bad)} of {len(predictions)} predictions would be dropped by Label Studio: {shown}{more}"
            )
        created = 0
        for start in range(0, len(predictions), chunk_size):
            chunk = list(predictions[start : start + chunk_size])
            created += self._import_chunk(project_id, chunk)
        return created

    def _import_chunk(self, project_id: int, chunk: list[NewPrediction]) -> int:
        what = f"import {len(chunk)} predictions into project {project_id}"
        try:
            count = self._post_predictions(project_id, chunk)
        except ApiError as exc:
            if not _is_transient(exc):
                raise self._translate(what, exc, None) from exc
            count = self._resend_missing(project_id, chunk, what)
        except (httpx.TransportError, requests.RequestException):
            count = self._resend_missing(project_id, chunk, what)
        if count != len(chunk):
            raise PredictionsRejected(
                f"Label Studio created {count} of {len(chunk)} predictions for project {project_id}: it drops "
                "predictions it cannot validate (an unknown task of another project, a malformed result).",
                sent=len(chunk),
                created=count,
            )
        return count

    def _post_predictions(self, project_id: int, chunk: list[NewPrediction]) -> int:
        response = self._request(
            "POST",
            f"/api/projects/{project_id}/import/predictions",
            json=[p.to_json() for p in chunk],
        )
        return int(response.json().get("created", 0))

    def _resend_missing(self, project_id: int, chunk: list[NewPrediction], what: str) -> int:
        """After an import of unknown outcome: send only the predictions not on the server yet."""
        log.warning("%s: outcome unknown, reading back what landed", what)

        def key(task: int, version: str, score: float | None) -> tuple[int, str, float]:
            return (task, version, round(float(score if score is not None else -1.0), 9))

        on_server = {
            key(p.task_id, p.model_version, p.score) for p in self.list_predictions(project_id)
        }
        missing = [p for p in chunk if key(p.task_id, p.model_version, p.score) not in on_server]
        if not missing:
            return len(chunk)
        return (
            len(chunk)
            - len(missing)
            + self._call_once(what, lambda: self._post_predictions(project_id, missing))
        )

    def create_prediction(self, prediction: NewPrediction) -> int:
        """Create one prediction (≈0.1 s whatever the project size, unlike an import); returns its id.

        Not retried blindly: if the outcome is unknown, the task's predictions are read back and
        the one just sent (same version and score) is reused instead of creating a second.
        """
        problem = prediction.problem()
        if problem:
            raise InvalidPrediction(f"task {prediction.task_id}: {problem}")
        what = f"create a prediction for task {prediction.task_id}"
        try:
            return int(
                self._request("POST", "/api/predictions/", json=prediction.to_json()).json()["id"]
            )
        except ApiError as exc:
            if not _is_transient(exc):
                raise self._translate(what, exc, None) from exc
        except (httpx.TransportError, requests.RequestException):
            pass
        log.warning("%s: outcome unknown, reading back", what)
        for found in self.task_predictions(prediction.task_id):
            if found.model_version == prediction.model_version and found.score == prediction.score:
                return found.id
        return int(
            self._call_once(
                what,
                lambda: self._request(
                    "POST", "/api/predictions/", json=prediction.to_json()
                ).json(),
            )["id"]
        )

    def task_predictions(self, task_id: int) -> list[Prediction]:
        """The predictions of one task."""
        raw = self._call(
            f"list predictions of task {task_id}",
            lambda: self._request("GET", "/api/predictions/", params={"task": task_id}).json(),
        )
        return [prediction_from_json(p) for p in raw]

    def list_predictions(
        self, project_id: int, *, model_version: str | None = None
    ) -> list[Prediction]:
        """All predictions of the project (optionally of one model version)."""
        raw = self._call(
            f"list predictions of project {project_id}",
            lambda: self._request(
                "GET", "/api/predictions/", params={"project": project_id}
            ).json(),
        )
        found = [prediction_from_json(p) for p in raw]
        if model_version is not None:
            found = [p for p in found if p.model_version == model_version]
        return found

    def update_prediction(
        self, prediction_id: int, *, score: float, result: list[dict[str, Any]] | None = None
    ) -> None:
        """Move one prediction (one cheap PATCH; idempotent, so retried)."""
        problem = score_problem(score)
        if problem:
            raise InvalidPrediction(f"prediction {prediction_id}: {problem}")
        body: dict[str, Any] = {"score": float(score)}
        if result is not None:
            body["result"] = result
        self._call(
            f"update prediction {prediction_id}",
            lambda: self._request("PATCH", f"/api/predictions/{prediction_id}/", json=body),
        )

    def delete_predictions(self, prediction_ids: Iterable[int]) -> int:
        """Delete predictions by id; one already gone counts as deleted. Returns how many."""
        count = 0
        for prediction_id in prediction_ids:
            self._call(
                f"delete prediction {prediction_id}",
                lambda pid=prediction_id: self._delete_ok_if_gone(f"/api/predictions/{pid}/"),
            )  # type: ignore[misc]
            count += 1
        return count

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of one model version in the project; returns how many."""
        body = self._call(
            f"delete model version {model_version!r} of project {project_id}",
            lambda: self._request(
                "DELETE",
                f"/api/projects/{project_id}/model-versions/",
                json={"model_version": model_version},
            ),
        ).json()
        return int(body.get("deleted_predictions", 0)) if isinstance(body, dict) else 0

    def _delete_ok_if_gone(self, path: str) -> None:
        try:
            self._request("DELETE", path)
        except ApiError as exc:
            if exc.status_code != 404:
                raise

    # ---- project fields

    def update_project(
        self,
        project_id: int,
        *,
        sampling: str | None = None,
        model_version: str | None = None,
        description: str | None = None,
        expert_instruction: str | None = None,
        show_instruction: bool | None = None,
        maximum_annotations: int | None = None,
    ) -> None:
        """PATCH the given project fields (unset ones are left alone). Idempotent, so retried.

        Label Studio refuses a ``model_version`` that no prediction (and no connected backend)
        has: write the queue's predictions before pointing the project at their version.
        """
        if sampling is not None and sampling not in SAMPLING_MODES:
            raise LabelStudioError(
                f"sampling must be one of {', '.join(SAMPLING_MODES)}; got {sampling!r}"
            )
        fields = {
            "sampling": sampling,
            "model_version": model_version,
            "description": description,
            "expert_instruction": expert_instruction,
            "show_instruction": show_instruction,
            "maximum_annotations": maximum_annotations,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        if not body:
            return
        try:
            self._call(
                f"update project {project_id}",
                lambda: self._request("PATCH", f"/api/projects/{project_id}/", json=body),
            )
        except LabelStudioError as exc:
            if model_version is not None and "Model version doesn't exist" in str(exc):
                raise LabelStudioError(
                    f"Label Studio accepts model_version {model_version!r} for project {project_id} only "
                    "once predictions of that version exist: write them first, then set it."
                ) from exc
            raise

    # ---- views (Data Manager tabs)

    def upsert_view(
        self,
        project_id: int,
        title: str,
        *,
        filters: dict[str, Any] | None = None,
        ordering: Sequence[str] = (),
    ) -> int:
        """Create the tab ``title`` or bring the existing one up to date; returns its id.

        Views are matched by title, so re-running never adds a second tab of the same name.
        """
        data = {
            "title": title,
            "filters": filters or {"conjunction": "and", "items": []},
            "ordering": list(ordering),
        }
        existing = self._find_view(project_id, title)
        if existing is not None:
            self._call(
                f"update view {title!r}",
                lambda: self._request(
                    "PATCH",
                    f"/api/dm/views/{existing}/",
                    json={"project": project_id, "data": data},
                ),
            )
            return existing

        def create() -> int:
            found = self._find_view(
                project_id, title
            )  # a lost response may have created it already
            if found is not None:
                return found
            body = self._request(
                "POST", "/api/dm/views/", json={"project": project_id, "data": data}
            ).json()
            return int(body["id"])

        return self._call(f"create view {title!r}", create)

    def list_views(self, project_id: int) -> list[dict[str, Any]]:
        return list(
            self._call(
                f"list views of project {project_id}",
                lambda: self._request(
                    "GET", "/api/dm/views/", params={"project": project_id}
                ).json(),
            )
        )

    def _find_view(self, project_id: int, title: str) -> int | None:
        for view in self.list_views(project_id):
            if (view.get("data") or {}).get("title") == title:
                return int(view["id"])
        return None

    # ---- webhooks

    def register_webhook(
        self,
        project_id: int,
        url: str,
        *,
        secret: str,
        secret_header: str = "X-Labelplan-Secret",
        events: Sequence[str] = WEBHOOK_EVENTS,
    ) -> int:
        """Point the project's webhook for ``url`` at labelplan, with a secret header; returns its id.

        Label Studio signs nothing and retries nothing, so the receiver checks ``secret_header``
        and the sync reconciles periodically. Matched by URL: re-registering updates in place.
        """
        unknown = sorted(
            set(events)
            - set(WEBHOOK_EVENTS)
            - {"PROJECT_UPDATED", "PROJECT_CREATED", "PROJECT_DELETED"}
        )
        if unknown:
            raise LabelStudioError(
                f"unknown webhook events {unknown}; allowed: {', '.join(WEBHOOK_EVENTS)}"
            )
        body = {
            "project": project_id,
            "url": url,
            "headers": {secret_header: secret},
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": list(events),
            "is_active": True,
        }
        existing = self._find_webhook(project_id, url)
        if existing is not None:
            self._call(
                "update a webhook",
                lambda: self._request("PATCH", f"/api/webhooks/{existing}/", json=body),
            )
            return existing

        def create() -> int:
            found = self._find_webhook(project_id, url)
            if found is not None:
                return found
            return int(self._request("POST", "/api/webhooks/", json=body).json()["id"])

        return self._call("create a webhook", create)

    def list_webhooks(self, project_id: int) -> list[dict[str, Any]]:
        hooks = self._call(
            "list webhooks",
            lambda: self._request("GET", "/api/webhooks/", params={"project": project_id}).json(),
        )
        return [h for h in hooks if h.get("project") == project_id]

    def _find_webhook(self, project_id: int, url: str) -> int | None:
        for hook in self.list_webhooks(project_id):
            if hook.get("url") == url:
                return int(hook["id"])
        return None

    # ---- tasks

    def read_task(self, task_id: int) -> Task:
        raw = self._call(
            f"read task {task_id}",
            lambda: self._request("GET", f"/api/tasks/{task_id}/").json(),
            not_found=LabelStudioError(f"task {task_id} does not exist (deleted?)"),
        )
        return task_from_json(raw)

    def set_task_overlap(self, task_id: int, overlap: int) -> bool:
        """Ask for ``overlap`` distinct annotators on a task; returns whether it is now open again.

        Label Studio does not recompute ``is_labeled`` when only ``overlap`` changes, so this
        sets it from the task's distinct non-cancelled annotators: a labeled task raised to
        overlap 2 goes back into the stream for someone else (Label Studio does not serve a task
        to a user who already annotated it). Idempotent, so retried.
        """
        if overlap < 1:
            raise LabelStudioError(f"overlap must be at least 1, got {overlap}")
        task = self.read_task(task_id)
        annotators = {a.completed_by for a in task.annotations if not a.was_cancelled}
        labeled = len(annotators) >= overlap
        self._call(
            f"set overlap of task {task_id}",
            lambda: self._request(
                "PATCH", f"/api/tasks/{task_id}/", json={"overlap": overlap, "is_labeled": labeled}
            ),
        )
        return not labeled

    # ---- acting as an annotator (the simulated annotators of tests and the demo)

    def next_task(self, project_id: int) -> Task | None:
        """The task Label Studio's label stream serves this user next (``None`` when done)."""
        try:
            raw = self._request("GET", f"/api/projects/{project_id}/next")
        except ApiError as exc:
            if exc.status_code == 404:
                return None
            raise self._translate(f"get the next task of project {project_id}", exc, None) from exc
        return task_from_json(raw.json())

    def submit_annotation(
        self, task_id: int, result: list[dict[str, Any]], *, lead_time: float | None = None
    ) -> int:
        """Submit an annotation as this user; returns its id (not retried: a repeat is a second one)."""
        body: dict[str, Any] = {"result": result}
        if lead_time is not None:
            body["lead_time"] = lead_time
        raw = self._call_once(
            f"annotate task {task_id}",
            lambda: self._request("POST", f"/api/tasks/{task_id}/annotations/", json=body).json(),
        )
        return int(raw["id"])

    def skip_task(self, task_id: int) -> int:
        """Skip a task as this user (a cancelled annotation, as the UI's Skip button makes)."""
        raw = self._call_once(
            f"skip task {task_id}",
            lambda: self._request(
                "POST",
                f"/api/tasks/{task_id}/annotations/",
                json={"result": [], "was_cancelled": True},
            ).json(),
        )
        return int(raw["id"])

    # ---- members

    def invite_member(self, email: str, password: str) -> str:
        """Sign a new member up through the organization's invite link; returns their legacy token.

        This is what a person does with the link an admin sends, so the member gets an active
        organization like any invited user. Needs an admin's key; signup by form is what OSS
        offers (there is no API to create a user with a password).
        """
        invite = self._call(
            "get the invite link", lambda: self._request("GET", "/api/invite").json()
        )
        signup = f"{self.url}{invite['invite_url']}"
        with requests.Session() as browser:
            page = browser.get(signup, timeout=self.timeout)
            csrf = browser.cookies.get("csrftoken", "")
            answer = browser.post(
                signup,
                data={
                    "email": email,
                    "password": password,
                    "csrfmiddlewaretoken": csrf,
                    "how_find_us": "Other",
                },
                headers={"Referer": signup},
                allow_redirects=False,
                timeout=self.timeout,
            )
            if page.status_code != 200 or answer.status_code != 302:
                reason = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', answer.text)
                raise LabelStudioError(
                    f"could not sign up {email} through the invite link (HTTP {answer.status_code}"
                    f"{': ' + '; '.join(r.strip() for r in reason) if reason else ''})"
                )
            token = browser.get(f"{self.url}/api/current-user/token", timeout=self.timeout)
            if token.status_code != 200:
                raise LabelStudioError(
                    f"signed up {email} but could not read their token (HTTP {token.status_code})"
                )
            return str(token.json()["token"])

    # ---- the ML backend's calls (labelplan_backend): media, connecting a backend, predictions

    def read_media(self, url: str, *, max_bytes: int, timeout: float | None = None) -> bytes:
        """The bytes behind a task's media URL, as Label Studio's own frontend would load them.

        A relative URL (``/data/upload/…``, ``/data/local-files/?d=…``) or one on this server
        gets this client's credentials (a legacy or personal access token, whichever it has);
        any other host gets none, so the key never leaves for a third party. Larger than
        ``max_bytes``, unreachable, or an HTTP error: :class:`MediaUnavailable`, saying which.
        """
        absolute = url if "://" in url else f"{self.url}/{url.lstrip('/')}"
        if not absolute.startswith(("http://", "https://")):
            raise MediaUnavailable(
                f"cannot read {url!r}: only http(s) URLs and Label Studio uploads are supported "
                "(cloud storage URIs are resolved by Label Studio for annotators only)"
            )
        ours = absolute.startswith(f"{self.url}/")
        headers = dict(self.sdk._client_wrapper.get_headers()) if ours else {}
        headers = {k: v for k, v in headers.items() if k.lower() in ("authorization", "cookie")}
        self.calls["GET"] += 1
        try:
            with self._http.get(
                absolute, headers=headers, timeout=timeout or self.timeout, stream=True
            ) as response:
                if response.status_code >= 400:
                    raise MediaUnavailable(
                        f"{_where(absolute, ours)} answered HTTP {response.status_code}"
                    )
                declared = int(response.headers.get("Content-Length") or 0)
                if declared > max_bytes:
                    raise MediaUnavailable(
                        f"{_where(absolute, ours)} is {declared} bytes, over the {max_bytes}-byte limit"
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaUnavailable(
                            f"{_where(absolute, ours)} is over the {max_bytes}-byte limit"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except requests.RequestException as exc:
            raise MediaUnavailable(
                f"could not reach {_where(absolute, ours)} ({type(exc).__name__})"
            ) from exc

    def list_ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        """The ML backends connected to a project (``/api/ml``)."""
        raw = self._call(
            "list ML backends",
            lambda: self._request("GET", "/api/ml", params={"project": project_id}).json(),
        )
        return [b for b in raw if int(b.get("project") or 0) == project_id]

    def connect_ml_backend(
        self,
        project_id: int,
        url: str,
        *,
        title: str = "labelplan",
        basic_auth: tuple[str, str] | None = None,
        is_interactive: bool = False,
    ) -> int:
        """Connect the ML backend at ``url`` to a project, as *Settings → Model → Connect Model*
        does; returns its id. Looks for one with the same URL first, so a retry never adds a
        second. Label Studio calls the backend's ``/health`` and ``/setup`` here and refuses a
        backend it cannot reach (:class:`LabelStudioError` with its reason)."""
        body: dict[str, Any] = {
            "project": project_id,
            "url": url,
            "title": title,
            "is_interactive": is_interactive,
            "auth_method": "BASIC_AUTH" if basic_auth else "NONE",
        }
        if basic_auth:
            body["basic_auth_user"], body["basic_auth_pass"] = basic_auth

        def create() -> int:
            for backend in self.list_ml_backends(project_id):
                if backend.get("url") == url:
                    return int(backend["id"])
            return int(self._request("POST", "/api/ml", json=body).json()["id"])

        return self._call(f"connect the ML backend at {url} to project {project_id}", create)

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int]) -> None:
        """Run the Data Manager action *Retrieve Predictions* on tasks: Label Studio asks the
        connected backend's ``/predict`` for all of them in one request and stores what it gets.
        Idempotent on Label Studio's side (tasks that already have a prediction of the backend's
        current version are skipped), so retried."""
        self._call(
            f"retrieve predictions for {len(task_ids)} tasks of project {project_id}",
            lambda: self._request(
                "POST",
                "/api/dm/actions/",
                params={"id": "retrieve_tasks_predictions", "project": project_id},
                json={"selectedItems": {"all": False, "included": [int(t) for t in task_ids]}},
            ),
        )

    # ---- review (labelplan.review): members, serving re-opened tasks first, reading a tab

    def list_users(self) -> dict[str, int]:
        """The organization's members: email (lower case) -> user id."""
        raw = self._call("list users", lambda: self._request("GET", "/api/users/").json())
        users = raw.get("results", []) if isinstance(raw, dict) else raw
        return {str(u["email"]).lower(): int(u["id"]) for u in users if u.get("email")}

    def overlap_first(self, project_id: int) -> bool:
        """Whether the project serves tasks that need more annotators (``overlap > 1``) first."""
        raw = self._call(
            f"read project {project_id}",
            lambda: self._request("GET", f"/api/projects/{project_id}/").json(),
            not_found=ProjectNotFound(f"project {project_id} does not exist or is not visible"),
        )
        return bool(raw.get("show_overlap_first"))

    def set_overlap_first(self, project_id: int, on: bool = True) -> None:
        """Serve tasks re-opened for a second annotator before new ones (``show_overlap_first``).

        Label Studio then picks, for each annotator, among unfinished tasks with ``overlap > 1``
        that they have not annotated, before the rest of the stream. Idempotent, so retried.
        """
        self._call(
            f"update project {project_id}",
            lambda: self._request(
                "PATCH", f"/api/projects/{project_id}/", json={"show_overlap_first": on}
            ),
        )

    # ---- Label Studio Enterprise's review API (absent from the Community edition)

    def review_api(self, project_id: int) -> ReviewApi:
        """Whether this server reviews through ``/api/annotation-reviews/`` for this project.

        The Community edition answers 404 there; Enterprise answers 403 when the organization has
        no reviewing features, and the project's reviews otherwise.
        """
        version = self._call(
            "read the server version", lambda: self._request("GET", "/api/version").json()
        )
        edition = str(version.get("edition") or "Community") if isinstance(version, dict) else "?"
        release = str(version.get("release", "")) if isinstance(version, dict) else ""
        try:
            self._call(
                "read the review API",
                lambda: self._request(
                    "GET",
                    "/api/annotation-reviews/",
                    params={"annotation__task__project": project_id},
                ),
            )
        except LabelStudioError as exc:
            cause = exc.__cause__
            status = cause.status_code if isinstance(cause, ApiError) else None
            if status in (403, 404, 405):
                why = {
                    403: "the review API refuses this key: reviewing is not enabled for the "
                    "organization (HTTP 403)",
                    404: "this server has no review API (GET /api/annotation-reviews/ answers 404)",
                    405: "this server has no review API (GET /api/annotation-reviews/ answers 405)",
                }[status]
                return ReviewApi(False, edition, f"Label Studio {edition} {release}: {why}".strip())
            raise
        return ReviewApi(
            True,
            edition,
            f"Label Studio {edition} {release}: reviews are read from /api/annotation-reviews/",
        )

    def list_reviews(self, project_id: int) -> list[AnnotationReview]:
        """Every review with a verdict on the project's annotations (Enterprise only), once each
        (a review can show up on two pages when the list changes while it is read)."""
        found: dict[int, AnnotationReview] = {}
        params: dict[str, Any] | None = {"annotation__task__project": project_id}
        path = "/api/annotation-reviews/"
        while path:
            body = self._call(
                f"list the reviews of project {project_id}",
                lambda path=path, params=params: self._request("GET", path, params=params).json(),  # type: ignore[misc]
            )
            items = body.get("results", []) if isinstance(body, dict) else body
            for raw in items:
                review = review_from_json(raw)
                if review is not None:
                    found[review.id] = review
            following = body.get("next") if isinstance(body, dict) else None
            path, params = "", None
            if following:  # the next page's address carries the query; keep our host
                parts = urlsplit(str(following))
                path, params = parts.path, dict(parse_qsl(parts.query))
        return sorted(found.values(), key=lambda r: r.id)

    def assign_for_review(
        self, project_id: int, task_ids: Sequence[int], user_ids: Sequence[int]
    ) -> None:
        """Assign tasks to reviewers (an Enterprise assignment of type ``RE``), the body the
        SDK's ``projects.assignments.bulk_assign`` sends. Sent once, never repeated blindly:
        :class:`AssignmentRefused` when Label Studio answered no (nothing was assigned), another
        :class:`LabelStudioError` when the outcome is unknown (5xx, no answer)."""
        body = {
            "selectedItems": {"all": False, "included": [int(t) for t in task_ids]},
            "type": "RE",
            "users": [int(u) for u in user_ids],
        }
        what = f"assign {len(task_ids)} tasks of project {project_id} for review"
        try:
            self._request("POST", f"/api/projects/{project_id}/tasks/assignees", json=body)
        except ApiError as exc:
            error = self._translate(what, exc, None)
            if 400 <= (exc.status_code or 0) < 500 and exc.status_code not in (408, 429):
                raise AssignmentRefused(str(error)) from exc
            raise error from exc
        except requests.RequestException as exc:
            raise LabelStudioUnavailable(
                f"no answer from Label Studio at {self.url} to {what}: {exc}"
            ) from exc

    def view_task_ids(self, project_id: int, view_id: int, *, page_size: int = 1000) -> list[int]:
        """The ids of the tasks a Data Manager tab shows, in the tab's order."""
        found: list[int] = []
        page = 1
        while True:
            params = {
                "project": project_id,
                "view": view_id,
                "page": page,
                "page_size": page_size,
                "fields": "task_only",
            }
            try:
                body = self._call(
                    f"list the tasks of view {view_id}",
                    lambda params=params: self._request("GET", "/api/tasks/", params=params).json(),  # type: ignore[misc]
                )
            except LabelStudioError as exc:
                if isinstance(exc.__cause__, ApiError) and exc.__cause__.status_code == 404:
                    return found  # past the last page
                raise
            items = body.get("tasks", []) if isinstance(body, dict) else body
            found.extend(int(t["id"]) for t in items)
            if len(items) < page_size:
                return found
            page += 1


# --------------------------------------------------------------------------- the ML backend's media


class MediaUnavailable(LabelStudioError):
    """A task's image (or other media) could not be read; the message says where and why."""


def _where(url: str, ours: bool) -> str:
    """A URL fit for a log line: its path on Label Studio, or its host elsewhere (no query)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"Label Studio {parts.path}" if ours else f"{parts.scheme}://{parts.netloc}{parts.path}"


def _detail(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return str(detail)[:300]
    return str(body)[:300]


def connect(settings: LabelStudioSettings) -> LabelStudioClient:
    """A client for ``settings``, after checking that the server answers and accepts the key."""
    client = LabelStudioClient(
        settings.url,
        settings.api_key,
        timeout=settings.timeout,
        retry_seconds=settings.retry_seconds,
    )
    client.whoami()
    return client
