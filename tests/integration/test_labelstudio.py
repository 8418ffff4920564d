"""The Label Studio adapter against a real Label Studio 1.23.2: every function, for real."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import requests

from labelplan.labelstudio import (
    AuthenticationFailed,
    InvalidPrediction,
    LabelStudioClient,
    LabelStudioError,
    LabelStudioUnavailable,
    NewPrediction,
    NoClassControl,
    PredictionsRejected,
    ProjectNotFound,
    connect,
)
from labelplan.localstudio import LocalStudio, free_port
from labelplan.settings import LabelStudioSettings

from .factories import IMAGE_CONFIG, Member

TEXTS = [{"text": f"short text number {i}", "camera": f"cam-{i % 3}"} for i in range(7)]


# ---------------------------------------------------------------- connecting


def test_connect_with_legacy_token(label_studio: LocalStudio) -> None:
    client = connect(LabelStudioSettings(url=label_studio.url, api_key=label_studio.token))
    assert client.whoami()["email"] == label_studio.email


def test_connect_with_personal_access_token(
    label_studio: LocalStudio, admin: LabelStudioClient
) -> None:
    created = requests.post(
        f"{label_studio.url}/api/token/",
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    pat = created.json()["token"]
    assert pat.count(".") == 2  # a JWT refresh token, not a legacy key
    client = connect(LabelStudioSettings(url=label_studio.url, api_key=pat))
    assert client.whoami()["email"] == label_studio.email
    project_id = admin.create_project("read with a PAT", IMAGE_CONFIG)
    assert client.read_project(project_id).title == "read with a PAT"


def test_wrong_token_is_a_clear_authentication_error(label_studio: LocalStudio) -> None:
    with pytest.raises(AuthenticationFailed, match="rejected the API key"):
        connect(LabelStudioSettings(url=label_studio.url, api_key="not-a-real-token"))


def test_unreachable_server_says_where_it_looked() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LabelStudioUnavailable, match=f"could not reach Label Studio at {url}"):
        connect(LabelStudioSettings(url=url, api_key="whatever-key", retry_seconds=1))


def test_client_repr_never_shows_the_key(
    admin: LabelStudioClient, label_studio: LocalStudio
) -> None:
    assert label_studio.token not in repr(admin)
    assert label_studio.token not in repr(
        LabelStudioSettings(url=admin.url, api_key=label_studio.token)
    )


# ---------------------------------------------------------------- projects and taxonomy


def test_read_project_parses_the_class_taxonomy(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project(title="taxonomy of a text project")
    project = admin.read_project(project_id)
    assert project.title == "taxonomy of a text project"
    assert project.taxonomy.controls["label"].labels == ("cat", "dog", "bird")
    assert project.taxonomy.controls["label"].to_name == ("text",)
    assert project.taxonomy.data_keys == ("text",)


def test_read_project_keeps_every_class_control_of_an_image_config(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project(label_config=IMAGE_CONFIG)
    taxonomy = admin.read_project(project_id).taxonomy
    assert {name: c.labels for name, c in taxonomy.controls.items()} == {
        "box": ("car", "bicycle"),
        "scene": ("day", "night"),
    }
    assert taxonomy.controls["box"].tag == "RectangleLabels"
    assert taxonomy.labels == ("car", "bicycle", "day", "night")


def test_a_config_without_classes_is_refused_with_advice(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    config = '<View><Text name="text" value="$text"/><TextArea name="note" toName="text"/></View>'
    project_id, _ = make_project(label_config=config)
    with pytest.raises(
        NoClassControl, match=r"no control with classes.*<TextArea name='note'>.*Choices"
    ):
        admin.read_project(project_id)


def test_unknown_project_is_reported_as_such(admin: LabelStudioClient) -> None:
    with pytest.raises(ProjectNotFound, match="project 987654 does not exist"):
        admin.read_project(987654)


def test_update_project_sets_the_queue_fields(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS[:1])
    admin.write_predictions(project_id, [NewPrediction(ids[0], 0.5, "labelplan-queue-v1")])
    admin.update_project(
        project_id,
        sampling="Uncertainty sampling",
        model_version="labelplan-queue-v1",
        description="admin text",
        expert_instruction="<p>Label <b>rare</b> things first</p>",
        show_instruction=True,
    )
    project = admin.read_project(project_id)
    assert project.sampling == "Uncertainty sampling"
    assert project.model_version == "labelplan-queue-v1"
    assert project.description == "admin text"
    assert "<b>rare</b>" in project.expert_instruction
    assert project.show_instruction is True
    admin.update_project(project_id, description="changed")  # other fields stay
    again = admin.read_project(project_id)
    assert (again.description, again.sampling) == ("changed", "Uncertainty sampling")


def test_a_model_version_without_predictions_is_refused_with_advice(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project(TEXTS[:1])
    with pytest.raises(LabelStudioError, match="only once predictions of that version exist"):
        admin.update_project(project_id, model_version="never-written")


def test_update_project_refuses_an_unknown_sampling(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project()
    with pytest.raises(LabelStudioError, match="sampling must be one of"):
        admin.update_project(project_id, sampling="Rare first")


# ---------------------------------------------------------------- reading tasks


@pytest.fixture
def labeled_project(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    annotate: Callable[..., int],
    admin: LabelStudioClient,
) -> dict[str, Any]:
    """Seven tasks: one labeled by an annotator (lead time 4.5 s), one skipped, one predicted."""
    project_id, task_ids = make_project(TEXTS)
    member = make_member("annotator")
    annotate(member, project_id, task_ids[1], "dog", lead_time=4.5)
    member.client.skip_task(task_ids[2])
    admin.write_predictions(project_id, [NewPrediction(task_ids[3], 0.25, "external-model")])
    return {"project": project_id, "tasks": task_ids, "member": member}


def test_iter_tasks_pages_through_everything_with_annotations_and_predictions(
    labeled_project: dict[str, Any], admin: LabelStudioClient
) -> None:
    tasks = {t.id: t for t in admin.iter_tasks(labeled_project["project"], page_size=3)}
    ids = labeled_project["tasks"]
    assert sorted(tasks) == sorted(ids)
    assert tasks[ids[0]].data == TEXTS[0]
    done = tasks[ids[1]].annotations
    assert len(done) == 1
    assert done[0].lead_time == pytest.approx(4.5)
    assert done[0].completed_by == labeled_project["member"].user_id
    assert done[0].was_cancelled is False
    assert done[0].result[0]["value"] == {"choices": ["dog"]}
    assert tasks[ids[1]].is_labeled
    skipped = tasks[ids[2]].annotations
    assert [a.was_cancelled for a in skipped] == [True]
    assert [(p.model_version, p.score) for p in tasks[ids[3]].predictions] == [
        ("external-model", 0.25)
    ]


def test_iter_tasks_since_a_time_returns_only_tasks_changed_after_it(
    labeled_project: dict[str, Any], admin: LabelStudioClient, annotate: Callable[..., int]
) -> None:
    project_id, ids = labeled_project["project"], labeled_project["tasks"]
    mark = max(t.updated_at for t in admin.iter_tasks(project_id) if t.updated_at)
    time.sleep(1.0)
    annotate(labeled_project["member"], project_id, ids[5], "bird")
    changed = [t.id for t in admin.iter_tasks(project_id, updated_since=mark)]
    assert changed == [ids[5]]
    assert list(admin.iter_tasks(project_id, updated_since=datetime.now(UTC))) == []


def test_iter_tasks_refuses_a_naive_time(
    labeled_project: dict[str, Any], admin: LabelStudioClient
) -> None:
    with pytest.raises(LabelStudioError, match="timezone-aware"):
        list(admin.iter_tasks(labeled_project["project"], updated_since=datetime(2026, 1, 1)))


def test_export_returns_the_same_tasks_as_paging(
    labeled_project: dict[str, Any], admin: LabelStudioClient
) -> None:
    project_id = labeled_project["project"]

    def digest(task: Any) -> tuple[Any, ...]:
        return (
            task.id,
            json.dumps(task.data, sort_keys=True),
            tuple((a.id, a.completed_by, a.lead_time, a.was_cancelled) for a in task.annotations),
            tuple((p.id, p.model_version, p.score) for p in task.predictions),
        )

    exported = sorted(digest(t) for t in admin.export_tasks(project_id))
    paged = sorted(digest(t) for t in admin.iter_tasks(project_id))
    assert len(exported) == len(TEXTS)
    assert exported == paged


# ---------------------------------------------------------------- predictions


def test_write_predictions_in_chunks_and_read_them_back(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS)
    sent = [
        NewPrediction(task_id, score=i / 10, model_version="queue-a")
        for i, task_id in enumerate(ids)
    ]
    assert admin.write_predictions(project_id, sent, chunk_size=3) == len(ids)
    stored = {
        (p.task_id, p.score) for p in admin.list_predictions(project_id, model_version="queue-a")
    }
    assert stored == {(p.task_id, p.score) for p in sent}


def test_a_score_outside_0_1_is_refused_before_anything_is_sent(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS[:3])
    batch = [
        NewPrediction(ids[0], 0.5, "queue-b"),
        NewPrediction(ids[1], 1.5, "queue-b"),
        NewPrediction(ids[2], float("nan"), "queue-b"),
    ]
    with pytest.raises(InvalidPrediction, match=r"2 of 3 predictions.*\[0, 1\], got 1\.5"):
        admin.write_predictions(project_id, batch)
    assert admin.list_predictions(project_id) == []


def test_a_prediction_the_server_drops_is_reported(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS[:2])
    wrong_control = [
        {"from_name": "nope", "to_name": "text", "type": "choices", "value": {"choices": ["cat"]}}
    ]
    batch = [
        NewPrediction(ids[0], 0.5, "queue-c", wrong_control),
        NewPrediction(ids[1], 0.5, "queue-c"),
    ]
    with pytest.raises(PredictionsRejected) as caught:
        admin.write_predictions(project_id, batch)
    assert (caught.value.sent, caught.value.created) == (2, 1)


def test_a_task_of_another_project_fails_the_batch_clearly(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project(TEXTS[:1])
    with pytest.raises(LabelStudioError, match="HTTP 400"):
        admin.write_predictions(project_id, [NewPrediction(99_999_999, 0.5, "queue-d")])


def test_an_import_whose_answer_is_lost_is_not_duplicated(
    make_project: Callable[..., Any], admin: LabelStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request lands but the connection drops before the answer: read back, send the rest once."""
    project_id, ids = make_project(TEXTS)
    batch = [NewPrediction(task_id, 0.1 + i / 20, "queue-e") for i, task_id in enumerate(ids)]
    real_post = admin._post_predictions
    calls: list[int] = []

    def post_then_lose_answer(pid: int, chunk: list[NewPrediction]) -> int:
        calls.append(len(chunk))
        if len(calls) == 1:
            real_post(pid, chunk[:4])  # only part of it landed before the failure
            raise requests.ConnectionError("connection reset by peer")
        return real_post(pid, chunk)

    monkeypatch.setattr(admin, "_post_predictions", post_then_lose_answer)
    assert admin.write_predictions(project_id, batch) == len(ids)
    assert calls == [len(ids), len(ids) - 4]
    stored = [p.task_id for p in admin.list_predictions(project_id, model_version="queue-e")]
    assert sorted(stored) == sorted(ids)  # one each, no duplicate


def test_update_delete_and_drop_a_model_version(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS[:4])
    admin.write_predictions(project_id, [NewPrediction(i, 0.5, "queue-f") for i in ids])
    admin.write_predictions(project_id, [NewPrediction(ids[0], 0.9, "keep-me")])
    first, second, *_ = sorted(
        admin.list_predictions(project_id, model_version="queue-f"), key=lambda p: p.task_id
    )
    admin.update_prediction(first.id, score=0.125)
    with pytest.raises(InvalidPrediction):
        admin.update_prediction(first.id, score=-0.1)
    assert admin.delete_predictions([second.id, second.id]) == 2  # gone already counts as gone
    left = {p.task_id: p.score for p in admin.list_predictions(project_id, model_version="queue-f")}
    assert left == {ids[0]: 0.125, ids[2]: 0.5, ids[3]: 0.5}
    assert admin.delete_model_version(project_id, "queue-f") == 3
    assert [p.model_version for p in admin.list_predictions(project_id)] == ["keep-me"]


# ---------------------------------------------------------------- views and webhooks


def test_upsert_view_creates_once_and_then_updates(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS)
    filters = {
        "conjunction": "and",
        "items": [
            {"filter": "filter:tasks:id", "operator": "in_list", "type": "Number", "value": ids[:2]}
        ],
    }
    first = admin.upsert_view(
        project_id, "Review queue", filters=filters, ordering=["-tasks:predictions_score"]
    )
    second = admin.upsert_view(project_id, "Review queue", filters=filters, ordering=["tasks:id"])
    assert first == second
    views = [v for v in admin.list_views(project_id) if v["data"].get("title") == "Review queue"]
    assert len(views) == 1
    assert views[0]["data"]["ordering"] == ["tasks:id"]
    assert views[0]["data"]["filters"]["items"][0]["value"] == ids[:2]
    other = admin.upsert_view(project_id, "Escalations")
    assert other != first


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], dict[str, Any]]]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.received
    finally:
        server.shutdown()


def test_webhook_is_registered_once_and_carries_the_secret_header(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    annotate: Callable[..., int],
    admin: LabelStudioClient,
    receiver: tuple[str, list[tuple[dict[str, str], dict[str, Any]]]],
) -> None:
    url, received = receiver
    project_id, ids = make_project(TEXTS[:2])
    first = admin.register_webhook(
        project_id, url, secret="old-secret", events=["ANNOTATION_CREATED"]
    )
    second = admin.register_webhook(project_id, url, secret="s3cr3t-value")
    assert first == second
    assert [h["url"] for h in admin.list_webhooks(project_id)] == [url]
    annotate(make_member("annotator"), project_id, ids[0], "cat")
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    headers, body = received[0]
    assert headers.get("X-Labelplan-Secret") == "s3cr3t-value"
    assert body["action"] == "ANNOTATION_CREATED"
    assert body["task"]["id"] == ids[0]


def test_webhook_refuses_unknown_events(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project()
    with pytest.raises(LabelStudioError, match="unknown webhook events"):
        admin.register_webhook(
            project_id, "http://127.0.0.1:9/x", secret="s", events=["PREDICTION_CREATED"]
        )


# ---------------------------------------------------------------- overlap: blind second annotation


def test_raising_overlap_sends_a_labeled_task_to_a_second_annotator_only(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    annotate: Callable[..., int],
    admin: LabelStudioClient,
) -> None:
    project_id, ids = make_project(TEXTS[:1])
    first, second = make_member("annotator"), make_member("annotator")
    served = first.client.next_task(project_id)
    assert served is not None and served.id == ids[0]
    annotate(first, project_id, ids[0], "cat")
    assert first.client.next_task(project_id) is None
    assert admin.set_task_overlap(ids[0], 2) is True
    assert admin.read_task(ids[0]).overlap == 2
    assert first.client.next_task(project_id) is None  # never back to the one who labeled it
    again = second.client.next_task(project_id)
    assert again is not None and again.id == ids[0]
    annotate(second, project_id, ids[0], "dog")
    task = admin.read_task(ids[0])
    assert task.is_labeled
    assert {a.completed_by for a in task.annotations} == {first.user_id, second.user_id}
    assert admin.set_task_overlap(ids[0], 2) is False  # already has two: stays labeled


# ---------------------------------------------------------------- members


def test_invited_member_has_an_organization_and_a_working_token(
    make_member: Callable[[str], Member], label_studio: LocalStudio
) -> None:
    member = make_member("reviewer")
    me = member.client.whoami()
    assert me["email"] == member.email
    assert me["active_organization"] is not None
    assert label_studio.token != member.client.sdk._client_wrapper._tokens_client.api_key


def test_create_one_prediction_and_count_calls(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    _project_id, ids = make_project(TEXTS[:2])
    before = admin.calls["POST"]
    prediction_id = admin.create_prediction(NewPrediction(ids[1], 0.75, "queue-g"))
    assert admin.calls["POST"] == before + 1
    assert [(p.id, p.score, p.model_version) for p in admin.task_predictions(ids[1])] == [
        (prediction_id, 0.75, "queue-g")
    ]
    with pytest.raises(InvalidPrediction):
        admin.create_prediction(NewPrediction(ids[0], 2.0, "queue-g"))


def test_a_single_create_whose_answer_is_lost_is_not_duplicated(
    make_project: Callable[..., Any], admin: LabelStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project_id, ids = make_project(TEXTS[:1])
    real_request = admin._request
    lost = []

    def lose_first_answer(method: str, path: str, **kwargs: Any) -> Any:
        response = real_request(method, path, **kwargs)
        if method == "POST" and path == "/api/predictions/" and not lost:
            lost.append(response.json()["id"])
            raise requests.ConnectionError("connection reset after the server answered")
        return response

    monkeypatch.setattr(admin, "_request", lose_first_answer)
    prediction_id = admin.create_prediction(NewPrediction(ids[0], 0.5, "queue-h"))
    assert [prediction_id] == lost
    assert len(admin.task_predictions(ids[0])) == 1


def test_load_tasks_gives_what_paging_gives_at_a_fraction_of_the_cost(
    labeled_project: dict[str, Any], admin: LabelStudioClient
) -> None:
    """Untouched tasks come from the slim listing, annotated and skipped ones in full."""
    project_id = labeled_project["project"]

    def digest(task: Any) -> tuple[Any, ...]:
        return (
            task.id,
            json.dumps(task.data, sort_keys=True),
            task.is_labeled,
            task.overlap,
            tuple(
                (a.id, a.completed_by, a.lead_time, a.was_cancelled, json.dumps(a.result))
                for a in task.annotations
            ),
        )

    loaded = sorted(digest(t) for t in admin.load_tasks(project_id, page_size=3))
    paged = sorted(digest(t) for t in admin.iter_tasks(project_id))
    assert loaded == paged
    assert len(loaded) == len(TEXTS)


def test_load_tasks_switches_to_an_export_when_most_tasks_are_annotated(
    labeled_project: dict[str, Any], admin: LabelStudioClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import labelplan.labelstudio as adapter

    monkeypatch.setattr(adapter, "EXPORT_ABOVE", 0.0)
    exports: list[int] = []
    real_export = admin.export_tasks
    monkeypatch.setattr(admin, "export_tasks", lambda pid: exports.append(pid) or real_export(pid))
    loaded = sorted(
        (t.id, len(t.annotations)) for t in admin.load_tasks(labeled_project["project"])
    )
    assert exports == [labeled_project["project"]]
    assert loaded == sorted(
        (t.id, len(t.annotations)) for t in admin.iter_tasks(labeled_project["project"])
    )
