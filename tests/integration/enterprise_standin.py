"""A stand-in for the three Label Studio Enterprise endpoints labelplan's review API path uses.

No Label Studio Enterprise server is reachable from this machine, so the Enterprise path is
tested against this: a reverse proxy in front of the **real** Label Studio 1.23.2 of the test
session that forwards every call, except that

* ``GET /api/version`` says ``"edition": "Enterprise"``;
* ``GET /api/annotation-reviews/?annotation__task__project=<id>`` lists the reviews a test put
  here, as the SDK's ``AnnotationReview`` type (``label_studio_sdk.types``) serializes them;
* ``POST /api/projects/<id>/tasks/assignees`` records the body and answers as the SDK's
  ``BulkAssignAssignmentsResponse`` type allows.

The request shapes are checked against the SDK's own generated Enterprise client in
``test_review_api.py``. What a real Enterprise server does with an assignment (its review
stream) is not simulated: only what labelplan sends and reads.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from label_studio_sdk.types import AnnotationReview

ASSIGNEES = re.compile(r"^/api/projects/(\d+)/tasks/assignees$")
HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length"}


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class EnterpriseStandIn:
    upstream: str
    reviews: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    """Reviews per project id, as the review API returns them."""
    received: list[Received] = field(default_factory=list)
    """Calls to the stand-in's own endpoints, in order."""
    page_size: int | None = None
    """Page the review list (``{"results", "next"}``) with this many per page, each page
    repeating the previous page's last review (a list that shifted while it was read), and
    ``next`` naming another host; ``None``: one plain list, as the SDK's type describes."""
    assignment_status: int = 200
    """What ``POST .../tasks/assignees`` answers (400: refused, 500: outcome unknown)."""
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_review(
        self, project_id: int, annotation_id: int, reviewer: int, accepted: bool, **extra: Any
    ) -> None:
        found = self.reviews.setdefault(project_id, [])
        review = AnnotationReview(
            id=len([r for rs in self.reviews.values() for r in rs]) + 1,
            annotation=annotation_id,
            accepted=accepted,
            created_by=reviewer,
            **extra,
        )
        found.append(review.model_dump(mode="json", exclude_none=True))

    def assignments(self) -> list[Any]:
        return [r.body for r in self.received if r.method == "POST"]

    def start(self) -> EnterpriseStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, body: bytes) -> requests.Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                return requests.request(
                    self.command,
                    standin.upstream + self.path,
                    headers=headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=120,
                )

            def _handle(self) -> None:
                body = self._body()
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path == "/api/annotation-reviews/" and self.command == "GET":
                    standin.received.append(Received("GET", parts.path, query, None))
                    project = int(query.get("annotation__task__project", ["0"])[0])
                    found = standin.reviews.get(project, [])
                    size = standin.page_size
                    if size is None:
                        self._answer(200, found)
                        return
                    page = int(query.get("page", ["1"])[0])
                    start = max(0, (page - 1) * size - 1)  # repeats the previous page's last
                    end = page * size
                    following = (
                        "https://elsewhere.invalid/api/annotation-reviews/"
                        f"?annotation__task__project={project}&page={page + 1}"
                    )
                    self._answer(
                        200,
                        {
                            "results": found[start:end],
                            "next": following if end < len(found) else None,
                        },
                    )
                    return
                if ASSIGNEES.match(parts.path) and self.command == "POST":
                    standin.received.append(
                        Received("POST", parts.path, query, json.loads(body or b"null"))
                    )
                    status = standin.assignment_status
                    self._answer(status, {"assignments": []} if status < 300 else {"detail": "no"})
                    return
                answer = self._forward(body)
                if parts.path == "/api/version" and answer.ok:
                    self._answer(answer.status_code, {**answer.json(), "edition": "Enterprise"})
                    return
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
