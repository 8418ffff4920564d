"""The demo: a local Label Studio, the ML backend and the sync on a labeled dataset, one command.

``make demo`` runs :func:`run_demo` on the example dataset. It is a workflow in the Prodigy
sense: each step is a plain call, in order — start Label Studio (SQLite, in a data dir under
the repo), serve the dataset's media, create the project once, start the ML backend and connect
it, start ``labelplan sync`` with the plan, and (optionally) drive simulated annotators through
Label Studio's own next-task endpoint. Everything it started is stopped on Ctrl-C. Re-running
reuses the data dir and the project.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from labelplan.dataset import DatasetError, Item, read_dataset
from labelplan.labelstudio import LabelStudioClient, LabelStudioError, choices_result
from labelplan.localstudio import LocalStudio, free_port, stop_group
from labelplan.plan import Plan, load_plan

BACKEND_DIR = Path(__file__).resolve().parents[2] / "backend"
ADMIN_EMAIL = "demo@labelplan.local"
ADMIN_PASSWORD = "labelplan-demo"  # a local, throwaway server on 127.0.0.1
BACKEND_AUTH = ("labelstudio", "labelplan-demo-backend")
SCORE_PER_PASS = 400
"""Images the demo's sync scores per pass: the first queue comes after these, not after all."""


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to do."""


def read_items(dataset: Path) -> list[Item]:
    """The dataset's items (``items.jsonl``, see docs/simulate.md), as :class:`DemoError` if bad."""
    try:
        return list(read_dataset(dataset).items)
    except DatasetError as exc:
        raise DemoError(str(exc)) from exc


def label_config(plan: Plan, items: list[Item]) -> str:
    """A Choices config over the plan's labels, for an image or a text dataset."""
    labels = list(
        dict.fromkeys(
            label for name, spec in plan.classes.items() for label in spec.labels or [name]
        )
    )
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    if "image" in items[0].data:
        shown = '<Image name="image" value="$image" zoom="true"/>'
        target = "image"
    else:
        shown = '<Text name="text" value="$text"/>'
        target = "text"
    return f'<View>{shown}<Choices name="label" toName="{target}" choice="single" showInline="true">{choices}</Choices></View>'


class MediaHost:
    """Serves the dataset folder over HTTP on 127.0.0.1 (images for the browser and the backend)."""

    def __init__(self, root: Path, port: int) -> None:
        handler = partial(_QuietFiles, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="media", daemon=True)

    def start(self) -> MediaHost:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Child:
    """A child process in its own process group, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_group(self.process, 15)


def spawn(
    name: str, command: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Child:
    handle = log.open("ab")
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=handle,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    handle.close()
    return Child(name, process, log)


def wait_healthy(
    child: Child, url: str, timeout: float, auth: tuple[str, str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DemoError(f"{child.name} exited; last lines of {child.log}:\n{_tail(child.log)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", auth=auth, timeout=2).ok:
                return
        time.sleep(0.5)
    raise DemoError(
        f"{child.name} did not answer {url}/health in {timeout:.0f} s; see {child.log}:\n{_tail(child.log)}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Demo:
    """What one demo run started (stopped in reverse order)."""

    studio: LocalStudio
    media: MediaHost
    client: LabelStudioClient
    project_id: int
    children: list[Child] = field(default_factory=list)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.media.stop()
        self.studio.stop()


def _state(root: Path) -> dict[str, Any]:
    path = root / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(root: Path, state: dict[str, Any]) -> None:
    (root / "state.json").write_text(json.dumps(state, indent=2))


def ensure_project(
    client: LabelStudioClient, root: Path, plan: Plan, items: list[Item], media_url: str
) -> int:
    """The demo project, created and filled on the first run, found again on later runs."""
    state = _state(root)
    if "project" in state:
        with contextlib.suppress(LabelStudioError):
            client.read_project(int(state["project"]))
            return int(state["project"])
    project_id = client.create_project("labelplan demo", label_config(plan, items))
    tasks = []
    for item in items:
        data = {
            key: f"{media_url}/{value}" if key == "image" else value
            for key, value in item.data.items()
        }
        tasks.append({"data": {**item.source, **data, "item": item.id}})
    client.import_tasks(project_id, tasks)
    state["project"] = project_id
    _save_state(root, state)
    return project_id


def write_cold_start(models: Path, items: list[Item], media_url: str, per_class: int = 2) -> None:
    """Give the backend a few example images per class (``MODEL_DIR/cold_start.json``), as an
    admin would: without them an image model knows nothing of the classes before the first labels."""
    examples: dict[str, list[str]] = {}
    for item in items:
        chosen = examples.setdefault(item.label, [])
        if len(chosen) < per_class and "image" in item.data:
            chosen.append(f"{media_url}/{item.data['image']}")
    models.mkdir(parents=True, exist_ok=True)
    hints = {label: {"examples": urls} for label, urls in examples.items() if urls}
    (models / "cold_start.json").write_text(json.dumps({"classes": hints}, indent=2))


def start_backend(demo: Demo, root: Path, store: Path, port: int) -> str:
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": demo.studio.url,
        "LABEL_STUDIO_API_KEY": demo.studio.token,
        "LABELPLAN_DB": str(store),
        "BASIC_AUTH_USER": BACKEND_AUTH[0],
        "BASIC_AUTH_PASS": BACKEND_AUTH[1],
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WORKERS": "1",
        "THREADS": "4",
        "MODEL_DIR": str(root / "models"),
        "HF_HUB_OFFLINE": "1",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    child = spawn(
        "ML backend",
        [gunicorn, "-c", "gunicorn.conf.py", "_wsgi:app"],
        env,
        root / "backend.log",
        BACKEND_DIR,
    )
    demo.children.append(child)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(child, url, 180, BACKEND_AUTH)
    demo.client.connect_ml_backend(
        demo.project_id, url, title="labelplan backend", basic_auth=BACKEND_AUTH
    )
    return url


def start_sync(
    demo: Demo, root: Path, store: Path, plan_path: Path, backend_url: str, interval: float
) -> None:
    env = {
        **os.environ,
        "LABEL_STUDIO_URL": demo.studio.url,
        "LABEL_STUDIO_API_KEY": demo.studio.token,
        "LABELPLAN_DB": str(store),
        "LABELPLAN_BACKEND_URL": backend_url,
        "BASIC_AUTH_USER": BACKEND_AUTH[0],
        "BASIC_AUTH_PASS": BACKEND_AUTH[1],
        "LABELPLAN_WEBHOOK_SECRET": secrets.token_hex(24),
    }
    command = [
        sys.executable,
        "-m",
        "labelplan.cli",
        "sync",
        "--plan",
        str(plan_path),
        "--project",
        str(demo.project_id),
        "--interval",
        str(interval),
        "--score-per-pass",
        str(SCORE_PER_PASS),
        "--webhook-port",
        str(free_port()),
    ]
    demo.children.append(spawn("sync", command, env, root / "sync.log"))


def first_pass_done(store: Path, project_id: int, timeout: float, child: Child) -> None:
    """Wait until the sync has written its first queue (its audit log has a pass)."""
    from labelplan.store import open_store

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DemoError(f"the sync exited; last lines of {child.log}:\n{_tail(child.log)}")
        if store.exists():
            opened = open_store(str(store))
            try:
                if any(e.kind == "pass" for e in opened.audit_log(project_id, 5)):
                    return
            finally:
                opened.close()
        time.sleep(1)
    raise DemoError(
        f"the sync wrote no queue in {timeout:.0f} s; see {child.log}:\n{_tail(child.log)}"
    )


def annotators(demo: Demo, root: Path, count: int) -> list[LabelStudioClient]:
    """``count`` invited members (created once, their tokens kept in the demo's state)."""
    state = _state(root)
    tokens: dict[str, str] = state.setdefault("annotators", {})
    for n in range(1, count + 1):
        email = f"annotator{n}@labelplan.local"
        if email not in tokens:
            tokens[email] = demo.client.invite_member(
                email, password=f"demo-{n}-{secrets.token_hex(4)}"
            )
    _save_state(root, state)
    return [
        LabelStudioClient(demo.studio.url, tokens[f"annotator{n}@labelplan.local"])
        for n in range(1, count + 1)
    ]


def simulate(
    demo: Demo,
    members: list[LabelStudioClient],
    truth: dict[str, str],
    *,
    stop_after: int | None,
    pause: float,
    say: Callable[[str], None],
) -> int:
    """Members take turns asking Label Studio for their next task and submitting its true label."""
    control = demo.client.read_project(demo.project_id).taxonomy.controls["label"]
    done = 0
    while stop_after is None or done < stop_after:
        for member in members:
            task = member.next_task(demo.project_id)
            if task is None:
                say("every task is labeled")
                return done
            label = truth[str(task.data.get("item"))]
            member.submit_annotation(
                task.id, choices_result(control, [label]), lead_time=round(2 + 6 * pause, 1)
            )
            done += 1
            if stop_after is not None and done >= stop_after:
                return done
        time.sleep(pause)
    return done


@contextlib.contextmanager
def running_demo(
    dataset: Path,
    plan_path: Path,
    root: Path,
    *,
    port: int = 8080,
    media_port: int = 8081,
    backend_port: int = 9090,
    interval: float = 10.0,
    say: Callable[[str], None] = print,
) -> Iterator[Demo]:
    """Start everything (see the module docstring); stop everything on exit."""
    dataset, plan_path, root = (
        dataset.resolve(),
        plan_path.resolve(),
        root.resolve(),
    )  # children run elsewhere
    plan = load_plan(plan_path)
    items = read_items(dataset)
    missing = sorted(
        {i.label for i in items} - {label for s in plan.classes.values() for label in s.labels}
    )
    if missing:
        raise DemoError(
            f"the dataset has labels the plan does not map: {missing}; add them to {plan_path}"
        )
    root.mkdir(parents=True, exist_ok=True)
    store = root / "labelplan.sqlite3"
    say("starting Label Studio (the first start migrates its database: about a minute)…")
    studio = LocalStudio(
        root / "label-studio", email=ADMIN_EMAIL, password=ADMIN_PASSWORD, port=port or free_port()
    )
    studio.start()
    media = MediaHost(dataset, media_port).start()
    demo = Demo(studio, media, LabelStudioClient(studio.url, studio.token), 0)
    try:
        demo.project_id = ensure_project(demo.client, root, plan, items, media.url)
        say("starting the ML backend…")
        write_cold_start(root / "models", items, media.url)
        backend_url = start_backend(demo, root, store, backend_port or free_port())
        say(
            f"starting the sync (each pass scores up to {SCORE_PER_PASS} new images: the first "
            "queue comes after the first ones, about a minute, and improves as the rest are "
            "scored)…"
        )
        start_sync(demo, root, store, plan_path, backend_url, interval)
        first_pass_done(store, demo.project_id, 600, demo.children[-1])
        yield demo
    finally:
        demo.stop()


def welcome(demo: Demo) -> str:
    url = f"{demo.studio.url}/projects/{demo.project_id}/data"
    return (
        f"\nlabelplan demo is running.\n"
        f"  Label Studio: {url}\n  login: {ADMIN_EMAIL} / {ADMIN_PASSWORD}\n\n"
        "What to look at:\n"
        "  - Click 'Label All Tasks': the tasks come in the plan's order (rare classes first, capped easy ones).\n"
        "  - Data Manager: add the 'Prediction score' column, sort by it: that is the queue (model version labelplan-queue).\n"
        "  - Settings > Model: the ML backend; the sync keeps the project on the queue version.\n"
        f"  - Logs: the sync's passes and problems in {demo.children[-1].log}.\n"
        "Ctrl-C stops everything this started.\n"
    )
