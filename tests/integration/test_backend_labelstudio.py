"""The ML backend against a real Label Studio 1.23.2 and a real gunicorn with 2 workers.

Connected through Label Studio's API, asked for predictions by the Data Manager's "Retrieve
predictions" action, trained by the annotations Label Studio reports to its ``/webhook``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from labelplan.labelstudio import LabelStudioClient
from labelplan.localstudio import LocalStudio, free_port
from labelplan.store import open_store

from .backend_server import BASIC_AUTH, BackendServer, ImageHost, png, running_backend
from .factories import IMAGE_CONFIG, TEXT_CONFIG

# Topics the class names say nothing about: only the annotations can teach the mapping.
TOPICS = {
    "cat": [
        "the invoice for march was paid by bank transfer",
        "quarterly revenue grew while operating costs fell",
        "please settle the outstanding balance on your account",
        "the accountant filed the tax return before the deadline",
    ],
    "dog": [
        "heavy rain and strong wind expected tomorrow morning",
        "a cold front brings snow to the northern valleys",
        "sunny skies with a light breeze this afternoon",
        "thunderstorms are forecast for the weekend",
    ],
    "bird": [
        "the striker scored twice in the second half",
        "the marathon runner finished in record time",
        "the tennis final went to a fifth set tie break",
        "the goalkeeper saved a penalty in extra time",
    ],
}


@pytest.fixture(scope="module")
def backend(
    label_studio: LocalStudio, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackendServer]:
    with running_backend(
        label_studio.url, label_studio.token, tmp_path_factory.mktemp("backend")
    ) as server:
        yield server


def wait_for(condition: Callable[[], Any], timeout: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def backend_version(backend: BackendServer, project_id: int, config: str) -> str:
    answer = requests.post(
        f"{backend.url}/setup",
        json={"project": f"{project_id}.1", "schema": config},
        auth=BASIC_AUTH,
        timeout=5,
    )
    answer.raise_for_status()
    return str(answer.json()["model_version"])


def test_text_project_gets_scored_predictions_then_learns_from_annotations(
    admin: LabelStudioClient,
    make_project: Callable[..., tuple[int, list[int]]],
    make_member: Callable[[str], Any],
    annotate: Callable[..., int],
    backend: BackendServer,
) -> None:
    texts = [(label, text) for label, items in TOPICS.items() for text in items]
    # Label Studio refuses to import a task without the config's data key, so that case is
    # covered by tests/backend/test_protocol.py and the unreadable images below.
    project_id, task_ids = make_project([{"text": t} for _, t in texts], label_config=TEXT_CONFIG)
    truth = {task_ids[i]: label for i, (label, _) in enumerate(texts)}

    admin.connect_ml_backend(project_id, backend.url, title="labelplan", basic_auth=BASIC_AUTH)
    admin.retrieve_predictions(project_id, task_ids)

    first = wait_for(lambda: admin.list_predictions(project_id), 60, "first predictions")
    assert {p.task_id for p in first} == set(task_ids)
    assert all(p.model_version == "labelplan-backend.0" for p in first)
    assert all(p.score is not None and 0.0 <= p.score <= 1.0 for p in first)
    assert all(p.result and p.result[0]["from_name"] == "label" for p in first)

    store = open_store(str(backend.store_path))
    before = {s.task_id: s.probs for s in store.scores(project_id)}
    assert set(before) == set(task_ids)
    assert all(abs(sum(p.values()) - 1.0) < 1e-6 for p in before.values())

    # Label the first two tasks of each topic; the other two stay unlabeled.
    member = make_member("annotator")
    labeled = [t for t in truth if texts[task_ids.index(t)][1] in _first_two()]
    for task_id in labeled:
        annotate(member, project_id, task_id, truth[task_id])

    # Each annotation's webhook queues a retrain; wait for the one that saw all of them.
    wait_for(
        lambda: (m := store.latest_model(project_id)) and m.meta.get("trained_on") == len(labeled),
        120,
        "a model trained on every annotation",
    )
    version = backend_version(backend, project_id, TEXT_CONFIG)
    assert version != "labelplan-backend.0"
    assert version == store.latest_model(project_id).version  # type: ignore[union-attr]
    wait_for(
        lambda: all(s.model_version == version for s in store.scores(project_id)),
        60,
        "the project re-scored with the new version",
    )
    after = {s.task_id: s.probs for s in store.scores(project_id)}
    unlabeled = [t for t in truth if t not in labeled]
    moved = [after[t][truth[t]] - before[t][truth[t]] for t in unlabeled]
    assert sum(m > 0 for m in moved) >= len(unlabeled) - 1, moved
    assert all(after[t][truth[t]] > before[t][truth[t]] for t in labeled)

    # Label Studio picks the new version up on the next retrieval.
    admin.retrieve_predictions(project_id, task_ids)
    fresh = wait_for(
        lambda: [p for p in admin.list_predictions(project_id) if p.model_version == version],
        60,
        "predictions of the new version",
    )
    assert {p.task_id for p in fresh} == set(task_ids)

    lookalikes = store.lookalikes(project_id)
    assert lookalikes and all(row.model_version == version for row in lookalikes)
    assert all(
        truth.get(row.anchor_task_id) == row.label
        for row in lookalikes
        if row.anchor_task_id in labeled
    )


def _first_two() -> set[str]:
    return {text for items in TOPICS.values() for text in items[:2]}


def test_image_project_scores_readable_images_and_skips_bad_ones(
    admin: LabelStudioClient,
    make_project: Callable[..., tuple[int, list[int]]],
    backend: BackendServer,
) -> None:
    files = {f"day{i}.png": png((230, 220, 120), mark=i) for i in range(3)}
    files |= {f"night{i}.png": png((10, 20, 60), mark=i) for i in range(3)}
    files["broken.png"] = b"this is not an image"
    with ImageHost(files) as host:
        good = [f"{host.url}/{name}" for name in files if name != "broken.png"]
        bad = [f"{host.url}/broken.png", f"http://127.0.0.1:{free_port()}/gone.png"]
        project_id, task_ids = make_project(
            [{"image": url} for url in good + bad], label_config=IMAGE_CONFIG
        )
        admin.connect_ml_backend(project_id, backend.url, basic_auth=BASIC_AUTH)
        admin.retrieve_predictions(project_id, task_ids)
        predictions = wait_for(lambda: admin.list_predictions(project_id), 90, "image predictions")

        assert {p.task_id for p in predictions} == set(task_ids[: len(good)])
        assert all(p.score is not None and 0.0 <= p.score <= 1.0 for p in predictions)
        assert all(p.result[0]["from_name"] == "scene" for p in predictions)
        log = backend.log()
        assert "broken.png" in log and "not a readable image" in log
        assert "could not reach" in log
        # Label Studio's key never goes to another host.
        assert all("Authorization" not in h for h in host.seen_headers)

    store = open_store(str(backend.store_path))
    features = store.features(project_id, "efficientnet-lite0")
    assert features.matrix.shape == (len(good), 1280)
    groups = wait_for(
        lambda: (
            (g := {s.task_id: s.dup_group for s in store.scores(project_id)})
            and all(g.values())
            and g
        ),
        60,
        "near-duplicate groups",
    )
    day_groups = {groups[t] for t in task_ids[:3]}
    night_groups = {groups[t] for t in task_ids[3:6]}
    assert len(day_groups) == 1 and len(night_groups) == 1 and day_groups != night_groups


def test_two_workers_agree_under_concurrent_predict_and_webhook(
    make_project: Callable[..., tuple[int, list[int]]],
    backend: BackendServer,
) -> None:
    project_id, task_ids = make_project(
        [{"text": f"message number {i} about the weather"} for i in range(20)],
        label_config=TEXT_CONFIG,
    )
    project_key = f"{project_id}.1"

    def predict(i: int) -> tuple[int, str]:
        batch = [{"id": t, "data": {"text": f"message number {t}"}} for t in task_ids[i % 4 :: 4]]
        answer = requests.post(
            f"{backend.url}/predict",
            json={"project": project_key, "label_config": TEXT_CONFIG, "tasks": batch},
            auth=BASIC_AUTH,
            timeout=60,
        )
        return answer.status_code, answer.json().get("model_version", "")

    def webhook(i: int) -> tuple[int, str]:
        try:
            answer = requests.post(
                f"{backend.url}/webhook",
                json={"action": "START_TRAINING", "project": {"id": project_id}},
                auth=BASIC_AUTH,
                timeout=1,  # Label Studio's own webhook timeout
            )
        except requests.Timeout:
            # With both cores saturated by encoding and training, an answer can take longer than
            # Label Studio waits; Label Studio then drops the event (the next one retrains).
            return 0, "dropped"
        return answer.status_code, ""

    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(predict, i) for i in range(16)]
        calls += [pool.submit(webhook, i) for i in range(8)]
        outcomes = [c.result() for c in calls]

    assert [code for code, _ in outcomes if code >= 400] == []
    delivered = [code for code, _ in outcomes[16:] if code]
    assert len(delivered) >= 4, (
        f"most webhooks must get through Label Studio's 1 s: {outcomes[16:]}"
    )
    store = open_store(str(backend.store_path))
    known = set(store.model_versions(project_id))
    assert {v for _, v in outcomes[:16] if v} <= known
    wait_for(
        lambda: (
            requests.get(f"{backend.url}/is_training", auth=BASIC_AUTH, timeout=2).json()
            == {"is_training": False}
        ),
        60,
        "background work to finish",
    )
    seen = {backend_version(backend, project_id, TEXT_CONFIG) for _ in range(12)}
    latest = store.latest_model(project_id)
    assert latest is not None and seen == {latest.version}


def test_basic_auth_is_required_and_credentials_never_reach_the_log(
    backend: BackendServer, label_studio: LocalStudio
) -> None:
    assert requests.get(f"{backend.url}/health", timeout=5).status_code == 401
    assert requests.post(f"{backend.url}/predict", json={}, timeout=5).status_code == 401
    wrong = requests.get(f"{backend.url}/health", auth=("labelstudio", "nope"), timeout=5)
    assert wrong.status_code == 401
    # Label Studio sends its access token in /setup's body; the log runs at DEBUG.
    requests.post(
        f"{backend.url}/setup",
        json={"project": "1.1", "schema": TEXT_CONFIG, "access_token": label_studio.token},
        auth=BASIC_AUTH,
        timeout=5,
    )
    log = backend.log()
    assert "DEBUG" in log
    assert BASIC_AUTH[1] not in log
    assert label_studio.token not in log


def test_the_backend_runs_under_label_studio_mls_own_starter(
    label_studio: LocalStudio, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    starter = str(Path(sys.executable).with_name("label-studio-ml"))
    env = dict(os.environ, LABELPLAN_DB=str(tmp_path / "s.sqlite3"), HF_HUB_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    process = subprocess.Popen(
        [starter, "start", "backend", "--port", str(port), "--host", "127.0.0.1"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        health = wait_for(
            lambda: _get(f"http://127.0.0.1:{port}/health"), 60, "the starter's backend"
        )
        assert health["status"] == "UP" and health["model_class"] == "LabelplanModel"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def _get(url: str) -> dict[str, Any] | None:
    try:
        answer = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return answer.json() if answer.ok else None
