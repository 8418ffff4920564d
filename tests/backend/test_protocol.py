"""The backend's HTTP protocol as Label Studio 1.23.2 calls it (Flask test client, real model).

Text only here (MiniLM is the bundled model); images and a real Label Studio are in
``tests/integration/test_backend_labelstudio.py``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from labelplan.store import open_store
from labelplan_backend.api import RedactSecrets, configure_logging, init_app
from labelplan_backend.settings import BackendSettings

CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text" choice="single">
    <Choice value="cat"/><Choice value="dog"/><Choice value="bird"/>
  </Choices>
</View>
"""


class RecordingJobs:
    """Stands in for the background runner: records what the app queued."""

    def __init__(self) -> None:
        self.queued: list[tuple[int, bool]] = []

    def retrain(self, project_id: int, *, full: bool = False) -> str:
        self.queued.append((project_id, full))
        return "queued"

    def idle(self) -> bool:
        return True


@pytest.fixture
def settings(tmp_path: Path) -> BackendSettings:
    return BackendSettings(store_url=str(tmp_path / "store.sqlite3"), max_body_bytes=64 * 1024)


@pytest.fixture
def jobs() -> RecordingJobs:
    return RecordingJobs()


@pytest.fixture
def client(settings: BackendSettings, jobs: RecordingJobs) -> Iterator[FlaskClient]:
    app = init_app(settings=settings, jobs=jobs)
    yield app.test_client()


def predict(client: FlaskClient, tasks: list[dict[str, Any]], project: str = "3.1700000000") -> Any:
    return client.post(
        "/predict", json={"project": project, "label_config": CONFIG, "tasks": tasks}
    )


def test_predict_returns_one_result_per_task_in_order_with_a_calibrated_score(
    client: FlaskClient, settings: BackendSettings
) -> None:
    answer = predict(
        client,
        [
            {"id": 11, "data": {"text": "the kitten purrs and chases a ball of yarn"}},
            {"id": 12, "data": {"text": "the puppy wags its tail and barks"}},
            {"id": 13, "data": {"text": "a sparrow builds a nest of twigs and feathers"}},
        ],
    )
    assert answer.status_code == 200
    results = answer.json["results"]
    assert [r["result"][0]["value"]["choices"] for r in results] == [["cat"], ["dog"], ["bird"]]
    assert all(0.0 <= r["score"] <= 1.0 for r in results)
    assert {r["model_version"] for r in results} == {"labelplan-backend.0"}
    stored = {s.task_id: s for s in open_store(settings.store_url).scores(3)}
    assert set(stored) == {11, 12, 13}
    assert set(stored[11].probs) == {"cat", "dog", "bird"}
    assert stored[11].probs["cat"] == pytest.approx(results[0]["score"], abs=1e-5)


def test_a_task_without_the_data_key_gets_an_empty_prediction_and_the_rest_is_scored(
    client: FlaskClient, settings: BackendSettings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        answer = predict(
            client,
            [
                {"id": 21, "data": {"text": "a dog"}},
                {"id": 22, "data": {"caption": "wrong key"}},
                {"id": 23, "data": {"text": "   "}},
                {"id": 24, "data": {"text": "a cat"}},
            ],
        )
    results = answer.json["results"]
    assert answer.status_code == 200
    assert results[1] == [] and results[2] == []
    assert results[0]["result"] and results[3]["result"]
    assert "task 22 has no data key 'text'" in caplog.text
    assert {p["task"] for p in answer.json["problems"]} == {22, 23}
    problems = {t.task_id: t.problem for t in open_store(settings.store_url).tasks(3)}
    assert "no data key" in (problems[22] or "")


def test_features_are_computed_once_per_task(
    client: FlaskClient, settings: BackendSettings
) -> None:
    tasks = [{"id": 31, "data": {"text": "a bird sings"}}]
    predict(client, tasks)
    store = open_store(settings.store_url)
    first = store.features(3, "minilm-l6-v2").matrix.copy()
    changed = [{"id": 31, "data": {"text": "something else entirely"}}]
    predict(client, changed)
    assert (store.features(3, "minilm-l6-v2").matrix == first).all()


def test_new_features_queue_a_rescore_for_duplicate_groups(
    client: FlaskClient, jobs: RecordingJobs
) -> None:
    predict(client, [{"id": 41, "data": {"text": "hello there"}}])
    assert jobs.queued == [(3, False)]


def test_setup_answers_the_stored_version_without_loading_a_model(client: FlaskClient) -> None:
    answer = client.post("/setup", json={"project": "3.17", "schema": CONFIG, "access_token": "x"})
    assert answer.status_code == 200
    assert answer.json == {"model_version": "labelplan-backend.0"}


def test_get_versions_lists_the_stored_versions(client: FlaskClient) -> None:
    predict(client, [{"id": 51, "data": {"text": "a cat"}}])
    answer = client.get("/versions?project=3.17")
    assert answer.status_code == 200
    assert answer.json["versions"] == ["labelplan-backend.0"]


@pytest.mark.parametrize(
    ("event", "full"),
    [
        ("ANNOTATION_CREATED", False),
        ("ANNOTATION_UPDATED", False),
        ("ANNOTATIONS_DELETED", True),
        ("START_TRAINING", False),
        ("TASKS_CREATED", False),
    ],
)
def test_training_events_queue_a_retrain_and_answer_at_once(
    client: FlaskClient, jobs: RecordingJobs, event: str, full: bool
) -> None:
    answer = client.post("/webhook", json={"action": event, "project": {"id": 9}})
    assert answer.status_code == 201
    assert jobs.queued == [(9, full)]


def test_other_webhook_events_are_ignored(client: FlaskClient, jobs: RecordingJobs) -> None:
    answer = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 9}})
    assert answer.status_code == 200 and jobs.queued == []


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook"])
def test_malformed_json_is_a_400(client: FlaskClient, path: str) -> None:
    answer = client.post(path, data="{not json", content_type="application/json")
    assert answer.status_code == 400
    assert "JSON object" in answer.json["error"]


def test_predict_without_a_task_list_is_a_400(client: FlaskClient) -> None:
    answer = client.post("/predict", json={"project": "3.1", "label_config": CONFIG, "tasks": "x"})
    assert answer.status_code == 400


def test_a_body_over_the_configured_size_is_a_413(client: FlaskClient) -> None:
    tasks = [{"id": i, "data": {"text": "x" * 1000}} for i in range(100)]  # ~100 kB > 64 kB
    answer = predict(client, tasks)
    assert answer.status_code == 413
    assert "LABELPLAN_MAX_BODY_MB" in answer.json["error"]


def test_with_basic_auth_configured_no_credentials_is_a_401(tmp_path: Path) -> None:
    settings = BackendSettings(
        store_url=str(tmp_path / "s.sqlite3"), basic_auth_user="ls", basic_auth_pass="s3cret-pass"
    )
    client = init_app(settings=settings, jobs=RecordingJobs()).test_client()
    assert client.get("/health").status_code == 401
    assert client.post("/predict", json={}).status_code == 401
    wrong = client.get("/health", headers={"Authorization": "Basic bHM6bm9wZQ=="})  # ls:nope
    assert wrong.status_code == 401
    right = client.get("/health", headers={"Authorization": "Basic bHM6czNjcmV0LXBhc3M="})
    assert right.status_code == 200


def test_secrets_are_redacted_from_every_log_line(tmp_path: Path) -> None:
    settings = BackendSettings(
        store_url=str(tmp_path / "s.sqlite3"),
        label_studio_api_key="ls-api-key-123456",
        basic_auth_user="ls",
        basic_auth_pass="basic-pass-98765",
        log_level="DEBUG",
    )
    stream = io.StringIO()
    configure_logging(settings, stream)
    try:
        logging.getLogger("some.library").error(
            "request to http://x/?token=%s failed with auth %s",
            "ls-api-key-123456",
            "basic-pass-98765",
        )
    finally:
        logging.getLogger().handlers.clear()
    text = stream.getvalue()
    assert "ls-api-key-123456" not in text and "basic-pass-98765" not in text
    assert "token=***" in text


def test_redaction_ignores_records_without_secrets() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain %s", ("message",), None)
    assert RedactSecrets(("secret-value",)).filter(record)
    assert record.getMessage() == "plain message"
