"""The webhook receiver: Label Studio tells the sync that something changed.

Label Studio 1.23 sends webhooks with a 1 s timeout, no retries and no signature. So the
receiver does the least possible inside the request — check the secret header (compared in
constant time), note which tasks changed, wake the sync loop — and answers at once. A dropped
event costs nothing but latency: the sync's periodic reconcile by ``updated_at`` catches it.

The same server answers ``GET /health`` and ``GET /metrics`` (the sync's Prometheus metrics,
no secret needed: bind it to an address only your monitoring reaches).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format, written by hand (no client library needed)."""

MAX_BODY = 10 * 1024 * 1024
"""Bigger payloads are refused (413): a TASKS_CREATED event for a huge import is not needed
— the reconcile reads the tasks anyway."""


@dataclass
class Changes:
    """What the webhooks said since the sync last looked, shared between threads."""

    changed: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)
    events: int = 0
    wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, action: str, payload: dict[str, Any]) -> None:
        ids = task_ids(payload)
        with self._lock:
            self.events += 1
            if action == "TASKS_DELETED":
                self.deleted |= ids
                self.changed -= ids
            else:
                self.changed |= ids
        self.wake.set()

    def take(self) -> tuple[set[int], set[int]]:
        """The changed and deleted task ids noted so far; clears them."""
        with self._lock:
            changed, deleted = self.changed, self.deleted
            self.changed, self.deleted = set(), set()
            self.wake.clear()
        return changed, deleted


@dataclass
class Exposition:
    """The latest Prometheus text the sync published, read by ``GET /metrics`` (thread-safe)."""

    _text: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, text: str) -> None:
        with self._lock:
            self._text = text

    def text(self) -> str:
        with self._lock:
            return self._text


def task_ids(payload: dict[str, Any]) -> set[int]:
    """Task ids named by a webhook payload (``task``, ``tasks``, ``annotation(s)``)."""
    found: set[int] = set()
    task = payload.get("task")
    if isinstance(task, dict) and isinstance(task.get("id"), int):
        found.add(task["id"])
    for item in payload.get("tasks") or []:
        if isinstance(item, dict) and isinstance(item.get("id"), int):
            found.add(item["id"])
    annotations = payload.get("annotations") or []
    annotation = payload.get("annotation")
    for item in [annotation, *annotations] if annotation else annotations:
        if isinstance(item, dict) and isinstance(item.get("task"), int):
            found.add(item["task"])
    return found


class WebhookReceiver:
    """A small HTTP server that accepts Label Studio webhooks carrying ``secret_header: secret``."""

    def __init__(
        self,
        changes: Changes,
        *,
        secret: str,
        secret_header: str = "X-Labelplan-Secret",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required: set LABELPLAN_WEBHOOK_SECRET")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = receiver.handle(
                    self.headers.get(secret_header, ""), self.headers, self.rfile
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # a health check, and the metrics for Prometheus
                if self.path.split("?")[0] == "/metrics":
                    body = receiver.exposition.text().encode()
                    self.send_response(200)
                    self.send_header("Content-Type", PROMETHEUS_CONTENT_TYPE)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200 if self.path == "/health" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(
                self, format: str, *args: Any
            ) -> None:  # never log headers (the secret)
                log.debug("webhook %s", args[0] if args else "")

        self.changes = changes
        self.exposition = Exposition()
        """Published by the sync each pass (``SyncService.exposition``), served at ``/metrics``."""
        self._secret = secret.encode()
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def handle(self, given_secret: str, headers: Any, body: Any) -> int:
        if not hmac.compare_digest(given_secret.encode(), self._secret):
            log.warning("webhook refused: missing or wrong secret header")
            return 401
        try:
            length = int(headers.get("Content-Length") or 0)
        except ValueError:
            return 400
        if length > MAX_BODY:
            return 413
        try:
            payload = json.loads(body.read(length) or b"{}")
        except (ValueError, UnicodeDecodeError):
            return 400
        if not isinstance(payload, dict):
            return 400
        self.changes.note(str(payload.get("action", "")), payload)
        return 200

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="webhooks", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
