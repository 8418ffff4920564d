"""The backend's RQ path (``REDIS_URL``) against the real Redis on 127.0.0.1:6379 and a real
Label Studio: webhooks queue one coalesced retrain job, and an ``rq worker`` beside the backend
runs it.

Uses Redis database 15, emptied before and after. Set ``LABELPLAN_TEST_REDIS_URL`` to use
another one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labelplan.labelstudio import LabelStudioClient
from labelplan.localstudio import LocalStudio
from labelplan.store import open_store

from .backend_server import BACKEND_DIR, BASIC_AUTH, running_backend
from .factories import TEXT_CONFIG
from .test_backend_labelstudio import TOPICS, wait_for

REDIS_URL = os.environ.get("LABELPLAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = "labelplan-backend"


@pytest.fixture
def redis_url() -> Iterator[str]:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    connection = Redis.from_url(REDIS_URL)
    try:
        connection.flushdb()
    except RedisConnectionError as exc:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({exc}): start it or set "
            "LABELPLAN_TEST_REDIS_URL"
        )
    try:
        yield REDIS_URL
    finally:
        connection.flushdb()


def test_webhooks_queue_one_retrain_job_in_redis_and_an_rq_worker_runs_it(
    label_studio: LocalStudio,
    admin: LabelStudioClient,
    make_project: Callable[..., tuple[int, list[int]]],
    make_member: Callable[[str], Any],
    annotate: Callable[..., int],
    redis_url: str,
    tmp_path: Path,
) -> None:
    from redis import Redis
    from rq import Queue

    texts = [(label, text) for label, items in TOPICS.items() for text in items]
    project_id, task_ids = make_project([{"text": t} for _, t in texts], label_config=TEXT_CONFIG)
    queue = Queue(QUEUE, connection=Redis.from_url(redis_url))
    with running_backend(
        label_studio.url,
        label_studio.token,
        tmp_path,
        workers=1,
        extra_env={"REDIS_URL": redis_url},
    ) as backend:
        admin.connect_ml_backend(project_id, backend.url, title="labelplan", basic_auth=BASIC_AUTH)
        member = make_member("annotator")
        labeled = [task_ids[i] for i in range(0, len(task_ids), 2)]
        for task_id in labeled:
            annotate(member, project_id, task_id, texts[task_ids.index(task_id)][0])
        wait_for(lambda: queue.count >= 1, 30, "a retrain job in Redis")
        # a burst of webhooks is one job (the job id is per project and kind), and nothing
        # trains in the web worker: only the rq worker runs it
        assert queue.job_ids == [f"retrain-{project_id}-changes"]
        store = open_store(str(backend.store_path))
        assert store.latest_model(project_id) is None
        worker = subprocess.run(
            [
                str(Path(sys.executable).with_name("rq")),
                "worker",
                "--burst",
                "--url",
                redis_url,
                QUEUE,
            ],
            cwd=BACKEND_DIR,
            env=backend.environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert queue.count == 0
        model = store.latest_model(project_id)
        assert model is not None and model.meta.get("trained_on") == len(labeled)
        assert {s.model_version for s in store.scores(project_id)} == {model.version}
        assert label_studio.token not in worker.stdout + worker.stderr
