"""Background work: retraining and re-scoring, off the request path.

Label Studio gives a webhook 1 s and never retries, so ``/webhook`` only queues. Two runners,
one interface:

* :class:`ThreadJobs` (default): one daemon thread per worker process. Requests for the same
  project coalesce while one is waiting, and the store's training lock keeps two workers from
  training the same project at once.
* :class:`RedisJobs` (``REDIS_URL`` set): jobs go to the RQ queue ``labelplan-backend``; run
  ``rq worker --url $REDIS_URL labelplan-backend`` beside the web workers (same environment).
  A job id per project and kind makes a burst of webhooks one job.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Protocol

from labelplan_backend.settings import BackendSettings

log = logging.getLogger(__name__)

RQ_QUEUE = "labelplan-backend"


class Jobs(Protocol):
    def retrain(self, project_id: int, *, full: bool = False) -> str:
        """Queue a retrain of the project; returns a short description of what was queued."""
        ...

    def idle(self) -> bool:
        """Nothing queued or running in this process (tests and ``/health``)."""
        ...


class ThreadJobs:
    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self._queue: queue.Queue[tuple[int, bool]] = queue.Queue()
        self._pending: set[tuple[int, bool]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = False

    def retrain(self, project_id: int, *, full: bool = False) -> str:
        key = (project_id, full)
        with self._lock:
            if key in self._pending:
                return f"retrain of project {project_id} already queued"
            self._pending.add(key)
            self._queue.put(key)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="labelplan-backend-jobs", daemon=True
                )
                self._thread.start()
        return f"retrain of project {project_id} queued"

    def idle(self) -> bool:
        with self._lock:
            return not self._pending and not self._busy

    def _run(self) -> None:
        from labelplan_backend.training import retrain

        while True:
            key = self._queue.get()
            with self._lock:
                self._pending.discard(key)
                self._busy = True
            project_id, full = key
            try:
                retrain(project_id, self.settings, full=full)
            except Exception:
                log.exception("retrain of project %d failed; the next event retries it", project_id)
            finally:
                with self._lock:
                    self._busy = False


class RedisJobs:
    def __init__(self, settings: BackendSettings) -> None:
        from redis import Redis
        from rq import Queue

        if settings.redis_url is None:
            raise ValueError("RedisJobs needs REDIS_URL")
        self.connection = Redis.from_url(settings.redis_url)
        self.queue = Queue(RQ_QUEUE, connection=self.connection)

    def retrain(self, project_id: int, *, full: bool = False) -> str:
        from rq.job import Job, JobStatus

        job_id = f"retrain-{project_id}-{'full' if full else 'changes'}"
        try:
            existing = Job.fetch(job_id, connection=self.connection)
            if existing.get_status() == JobStatus.QUEUED:
                return f"retrain of project {project_id} already queued"
        except Exception:  # rq raises NoSuchJobError (or a Redis error) when absent
            pass
        self.queue.enqueue(
            "labelplan_backend.training.retrain_job",
            project_id,
            full,
            job_id=job_id,
            job_timeout=3600,
            result_ttl=3600,
            failure_ttl=86400,
        )
        return f"retrain of project {project_id} queued on {RQ_QUEUE}"

    def idle(self) -> bool:
        return self.queue.count == 0


def jobs_for(settings: BackendSettings) -> Jobs:
    return RedisJobs(settings) if settings.redis_url else ThreadJobs(settings)
