"""The HTTP app Label Studio talks to: label-studio-ml's routes, with 1.0.9's gaps closed.

Same routes and shapes as ``label_studio_ml.api`` (``/health``, ``/setup``, ``/predict``,
``/webhook``, ``/versions``), built as our own Flask app rather than 1.0.9's module-level one,
because that one keeps the model in worker memory, logs request headers and bodies at DEBUG
(basic-auth credentials and Label Studio's access token with them), answers ``GET /versions``
with 405 and drops ``START_TRAINING``/``ANNOTATIONS_DELETED``. Here:

* every route answers from the store, so workers agree; ``/setup`` loads no model;
* bad JSON is a 400, a body over ``LABELPLAN_MAX_BODY_MB`` a 413, missing basic auth a 401
  (except on ``/webhook``, which Label Studio calls without it: see :data:`OPEN_PATHS`);
* one unreadable task gets an empty prediction (``[]``), never a failed batch;
* ``/webhook`` queues work and answers at once (Label Studio waits 1 s and never retries).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from labelplan.store import Store, open_store
from labelplan_backend.extractors import UnsupportedProject
from labelplan_backend.jobs import Jobs, jobs_for
from labelplan_backend.model import LabelplanModel, project_id_of
from labelplan_backend.settings import BackendSettings

log = logging.getLogger(__name__)

TRAINING_EVENTS = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "START_TRAINING",
        "TASKS_CREATED",
    }
)
"""Webhook events that change what the model knows: each queues a retrain (and re-score)."""


OPEN_PATHS = frozenset({"/webhook"})
"""Label Studio 1.23.2 sends a connected backend's webhooks without the basic auth it uses for
``/predict`` (seen in the integration tests), so ``/webhook`` cannot demand it. It is safe open:
a webhook only queues a retrain, and the retrain reads annotations from Label Studio itself,
never from the payload; a burst coalesces into one job per project."""


class BadRequest(ValueError):
    """The request is not what Label Studio sends; the message says what was expected."""


def init_app(
    model_class: type[LabelplanModel] = LabelplanModel,
    settings: BackendSettings | None = None,
    *,
    store: Store | None = None,
    jobs: Jobs | None = None,
) -> Flask:
    """The app, as ``label_studio_ml.api.init_app(model_class)`` returns one."""
    settings = settings or BackendSettings.from_env()
    store = store or open_store(settings.store_url)
    jobs = jobs or jobs_for(settings)
    app = Flask("labelplan_backend")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False

    def model_for(label_config: str) -> LabelplanModel:
        return model_class(label_config=label_config, settings=settings, store=store)

    @app.before_request
    def require_basic_auth() -> Response | None:
        expected = settings.basic_auth
        if expected is None or request.path in OPEN_PATHS:
            return None
        given = request.authorization
        ok = (
            given is not None
            and hmac.compare_digest((given.username or "").encode(), expected[0].encode())
            and hmac.compare_digest((given.password or "").encode(), expected[1].encode())
        )
        if ok:
            return None
        log.warning("refused %s %s: missing or wrong basic auth", request.method, request.path)
        response = jsonify(
            {
                "error": "basic auth required: use the user and password set in BASIC_AUTH_USER/BASIC_AUTH_PASS"
            }
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="labelplan-backend"'
        return response

    @app.before_request
    def limit_body() -> None:
        # Werkzeug 2.0.2 (pinned by label-studio-ml) does not enforce MAX_CONTENT_LENGTH for
        # JSON bodies, so check the declared length here and the real one in body().
        if (request.content_length or 0) > settings.max_body_bytes:
            raise RequestEntityTooLarge()

    def body() -> dict[str, Any]:
        raw = request.get_data(cache=True)
        if len(raw) > settings.max_body_bytes:
            raise RequestEntityTooLarge()
        data = request.get_json(silent=True, force=True)
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object (Content-Type: application/json)")
        return data

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest) -> tuple[Response, int]:
        log.warning("400 on %s: %s", request.path, error)
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(UnsupportedProject)
    def unsupported(error: UnsupportedProject) -> tuple[Response, int]:
        log.warning("unsupported project on %s: %s", request.path, error)
        return jsonify({"error": str(error)}), 422

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        log.warning("413 on %s: body over %d bytes", request.path, settings.max_body_bytes)
        return (
            jsonify(
                {
                    "error": f"request body over {settings.max_body_bytes} bytes: select fewer "
                    "tasks or raise LABELPLAN_MAX_BODY_MB"
                }
            ),
            413,
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": error.description}), error.code or 500

    @app.route("/", methods=["GET"])
    @app.route("/health", methods=["GET"])
    def health() -> Response:
        return jsonify(
            {
                "status": "UP",
                "model_class": model_class.__name__,
                "model_dir": str(settings.model_dir),
                "v2": False,
            }
        )

    @app.route("/setup", methods=["POST"])
    def setup() -> Response:
        data = body()
        project_id = _project(data.get("project"))
        # The schema is parsed only to refuse a config we cannot score, cheaply.
        model = model_for(_text(data, "schema"))
        return jsonify({"model_version": model.model_version(project_id)})

    @app.route("/predict", methods=["POST"])
    def predict() -> Response:
        data = body()
        tasks = data.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a list of task objects")
        project_id = _project(data.get("project"))
        model = model_for(_text(data, "label_config"))
        started = time.monotonic()
        results = model.predict(tasks, project=data.get("project"))
        if model.needs_rescore:
            jobs.retrain(project_id)
        log.info(
            "project %d: %d tasks predicted (%d empty) in %.2f s with %s",
            project_id,
            len(tasks),
            len(model.problems),
            time.monotonic() - started,
            model.version_used,
        )
        return jsonify(
            {
                "results": results,
                "model_version": model.version_used,
                "problems": [{"task": t, "reason": r} for t, r in model.problems.items()],
            }
        )

    @app.route("/webhook", methods=["POST"])
    def webhook() -> tuple[Response, int]:
        data = body()
        event = data.get("action")
        if not isinstance(event, str):
            raise BadRequest("a webhook body needs an 'action' (the Label Studio event name)")
        if event not in TRAINING_EVENTS:
            return jsonify({"status": "ignored", "event": event}), 200
        project_id = _project(data.get("project"))
        queued = jobs.retrain(project_id, full=event == "ANNOTATIONS_DELETED")
        log.info("webhook %s for project %d: %s", event, project_id, queued)
        return jsonify({"status": "queued", "event": event, "detail": queued}), 201

    @app.route("/versions", methods=["GET", "POST"])
    def versions() -> Response:
        raw = request.args.get("project")
        if raw is None:
            data = request.get_json(silent=True, force=True)
            raw = data.get("project") if isinstance(data, dict) else None
        project_id = _project(raw)
        return jsonify(
            {
                "versions": store.model_versions(project_id),
                "model_dir": str(settings.model_dir),
                "v2": False,
            }
        )

    @app.route("/is_training", methods=["GET"])
    def is_training() -> Response:
        return jsonify({"is_training": not jobs.idle()})

    app.extensions["labelplan"] = {"settings": settings, "store": store, "jobs": jobs}
    return app


def _project(value: Any) -> int:
    try:
        return project_id_of(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{key}' must be the project's label config (XML)")
    return value


class RedactSecrets(logging.Filter):
    """Replace known secrets in every log record by ``***`` (the last line of defence: nothing
    here logs them on purpose, but a library's error message might quote a URL or header)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure_logging(settings: BackendSettings, stream: Any = None) -> None:
    """Log to stderr at ``LOG_LEVEL`` with secrets redacted (Flask/werkzeug keep their levels)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(levelname)s] [%(process)d] [%(name)s] %(message)s")
    )
    handler.addFilter(RedactSecrets(settings.secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
