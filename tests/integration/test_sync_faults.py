"""The sync against a real Label Studio: set-up errors, faults, webhooks, live updates, disable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from labelplan.cli import app
from labelplan.labelstudio import LabelStudioClient, choices_result
from labelplan.localstudio import LocalStudio, free_port
from labelplan.plan import parse_plan
from labelplan.store import Store, open_store
from labelplan.sync import QUEUE_VERSION, SyncError, SyncService, SyncSettings
from labelplan.webhooks import Changes, WebhookReceiver

from .factories import Member
from .scenario import CONFIG, LABEL, PLAN, SimulatedBackend, street_scenes

runner = CliRunner()


@pytest.fixture
def small(
    make_project: Callable[..., Any], admin: LabelStudioClient, tmp_path: Path
) -> dict[str, Any]:
    """A 300-task version of the street scenes, a store and a sync service for it."""
    scenario = street_scenes(n=300, rare=12, lookalikes=10)
    project_id, task_ids = make_project(scenario.data, label_config=CONFIG, title="sync faults")
    store = open_store(str(tmp_path / "sync.sqlite3"))
    backend = SimulatedBackend(store, project_id, scenario, task_ids)
    service = SyncService(
        admin,
        store,
        scenario.plan(),
        SyncSettings(project_id, head_size=40, front=10),
        scorer=backend,
    )
    return {
        "scenario": scenario,
        "project": project_id,
        "tasks": task_ids,
        "truth": dict(zip(task_ids, scenario.truth, strict=True)),
        "store": store,
        "backend": backend,
        "service": service,
    }


def queue_predictions(admin: LabelStudioClient, project_id: int) -> Counter[int]:
    return Counter(
        p.task_id for p in admin.list_predictions(project_id, model_version=QUEUE_VERSION)
    )


def label(member: Member, admin: LabelStudioClient, setup: dict[str, Any], count: int) -> list[int]:
    control = admin.read_project(setup["project"]).taxonomy.controls["label"]
    served = []
    for _ in range(count):
        task = member.client.next_task(setup["project"])
        assert task is not None
        member.client.submit_annotation(
            task.id, choices_result(control, [LABEL[setup["truth"][task.id]]]), lead_time=2.0
        )
        served.append(task.id)
    return served


# ---------------------------------------------------------------- bad input: nothing written


def env_for(server: LocalStudio, tmp_path: Path, key: str | None = None) -> dict[str, str]:
    return {
        "LABEL_STUDIO_URL": server.url,
        "LABEL_STUDIO_API_KEY": key or server.token,
        "LABELPLAN_DB": str(tmp_path / "cli.sqlite3"),
    }


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_unknown_project_fails_before_writing(
    label_studio: LocalStudio, tmp_path: Path, plan_file: Path
) -> None:
    result = runner.invoke(
        app,
        ["sync", "--plan", str(plan_file), "--project", "777777", "--once"],
        env=env_for(label_studio, tmp_path),
    )
    assert result.exit_code == 2
    assert "project 777777 does not exist" in " ".join(result.stderr.split())


def test_wrong_token_fails_before_writing(
    label_studio: LocalStudio, tmp_path: Path, plan_file: Path
) -> None:
    result = runner.invoke(
        app,
        ["sync", "--plan", str(plan_file), "--project", "1", "--once"],
        env=env_for(label_studio, tmp_path, "bad-token"),
    )
    assert result.exit_code == 2
    assert "rejected the API key" in " ".join(result.stderr.split())
    assert label_studio.token not in result.output


def test_plan_labels_missing_from_the_config_fail_before_writing(
    label_studio: LocalStudio,
    make_project: Callable[..., Any],
    admin: LabelStudioClient,
    tmp_path: Path,
    plan_file: Path,
) -> None:
    project_id, _ = make_project(
        [{"text": "x", "camera": "a"}]
    )  # labels cat/dog/bird, not Bicycle/Car/Person
    result = runner.invoke(
        app,
        ["sync", "--plan", str(plan_file), "--project", str(project_id), "--once"],
        env=env_for(label_studio, tmp_path),
    )
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "class 'bicycle' maps to ['Bicycle']" in message
    assert "cat, dog, bird" in message
    assert admin.list_predictions(project_id) == []
    assert admin.read_project(project_id).sampling == "Sequential sampling"


def test_sync_once_from_the_command_line(
    label_studio: LocalStudio,
    small: dict[str, Any],
    admin: LabelStudioClient,
    tmp_path: Path,
    plan_file: Path,
) -> None:
    """No backend configured: tasks are planned without scores (discovery/control/easy lanes)."""
    project_id = small["project"]
    result = runner.invoke(
        app,
        [
            "sync",
            "--plan",
            str(plan_file),
            "--project",
            str(project_id),
            "--once",
            "--head-size",
            "30",
        ],
        env=env_for(label_studio, tmp_path),
    )
    assert result.exit_code == 0, result.output
    assert "pass: pulled 300" in result.stdout
    written = len(queue_predictions(admin, project_id))
    assert written > 0
    if written < 30:  # without scores only some lanes can serve; the shortfall is explained
        assert "the plan yields" in " ".join(result.stderr.split())
    assert admin.read_project(project_id).model_version == QUEUE_VERSION
    off = runner.invoke(
        app, ["disable", "--project", str(project_id)], env=env_for(label_studio, tmp_path)
    )
    assert off.exit_code == 0, off.output
    project = admin.read_project(project_id)
    assert project.sampling == "Sequential sampling"
    assert queue_predictions(admin, project_id) == Counter()


# ---------------------------------------------------------------- faults


def test_a_dropped_webhook_is_caught_by_the_next_reconcile(
    small: dict[str, Any], make_member: Callable[[str], Member], admin: LabelStudioClient
) -> None:
    service, store = small["service"], small["store"]
    service.run_pass()
    served = label(make_member("annotator"), admin, small, 3)  # no webhook delivered at all
    report = service.run_pass()
    assert report.pulled >= 3
    labeled = {a.task_id for a in store.annotations(small["project"])}
    assert set(served) <= labeled


def test_a_crash_mid_push_never_leaves_two_queue_predictions(
    small: dict[str, Any], admin: LabelStudioClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Label Studio got the predictions, the store never heard of them; a new process must not duplicate."""
    service, store = small["service"], small["store"]

    real_put_queue = Store.put_queue

    def crash(self: Store, project_id: int, rows: Any) -> None:
        rows = list(rows)
        if rows:
            raise SystemExit("killed between the Label Studio write and the store write")
        real_put_queue(self, project_id, rows)

    monkeypatch.setattr(Store, "put_queue", crash)
    with pytest.raises(SystemExit):
        service.run_pass()
    monkeypatch.undo()
    assert store.queue(small["project"]) == {}
    assert len(queue_predictions(admin, small["project"])) > 0  # they did land
    restarted = SyncService(
        admin, store, small["scenario"].plan(), service.settings, scorer=small["backend"]
    )
    report = restarted.run_pass()
    counts = queue_predictions(admin, small["project"])
    assert max(counts.values()) == 1
    assert set(store.queue(small["project"])) == set(counts)
    assert report.created == 0 or report.created < len(counts)


def test_killing_the_sync_process_mid_push_then_restarting_converges(
    label_studio: LocalStudio,
    small: dict[str, Any],
    admin: LabelStudioClient,
    tmp_path: Path,
    plan_file: Path,
) -> None:
    """A real SIGKILL while the first bulk push is in flight; the restarted service cleans up."""
    env = {**os.environ, **env_for(label_studio, tmp_path)}
    env["LABELPLAN_DB"] = str(tmp_path / "kill.sqlite3")
    command = [
        sys.executable,
        "-m",
        "labelplan.cli",
        "sync",
        "--plan",
        str(plan_file),
        "--project",
        str(small["project"]),
        "--once",
        "--head-size",
        "150",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not queue_predictions(admin, small["project"]):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    counts = queue_predictions(admin, small["project"])
    assert counts and max(counts.values()) == 1


def test_bad_task_data_is_reported_and_the_pass_goes_on(
    small: dict[str, Any], admin: LabelStudioClient
) -> None:
    broken = frozenset(small["tasks"][:5])
    small["backend"].broken = broken
    admin.import_tasks(
        small["project"], [{"text": "no camera key here"}, {"text": "odd", "camera": {"nested": 1}}]
    )
    report = small["service"].run_pass()
    assert any("could not read its data" in p for p in report.problems)
    assert any("have no scores" in p for p in report.problems)
    assert report.created > 0
    entries = small["store"].audit_log(small["project"])
    assert entries[0].kind == "pass" and entries[0].details["problems"]


def test_label_studio_restarted_mid_pass_backs_off_and_converges(
    make_project: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A second, private server is stopped and started again while the sync is working."""
    server = LocalStudio(tmp_path_factory.mktemp("restarting-ls"), port=free_port()).start()
    try:
        client = LabelStudioClient(server.url, server.token, retry_seconds=120)
        scenario = street_scenes(n=200, rare=8, lookalikes=5)
        project_id = client.create_project("restart", CONFIG)
        ids = client.import_tasks(project_id, scenario.data)
        store = open_store(str(tmp_path / "restart.sqlite3"))
        service = SyncService(
            client,
            store,
            scenario.plan(),
            SyncSettings(project_id, head_size=30, front=10),
            scorer=SimulatedBackend(store, project_id, scenario, ids),
        )
        service.run_pass()
        server.stop()
        restarter = subprocess.Popen(["sleep", "3"])  # the server stays down for a few seconds
        restarter.wait()
        server.start()
        report = service.run_pass()  # retried with backoff inside the adapter
        assert report.calls
        counts = Counter(
            p.task_id for p in client.list_predictions(project_id, model_version=QUEUE_VERSION)
        )
        assert counts and max(counts.values()) == 1
    finally:
        server.stop()


# ---------------------------------------------------------------- webhooks and live updates


def test_webhook_receiver_checks_the_secret_and_wakes_the_sync(
    small: dict[str, Any], make_member: Callable[[str], Member], admin: LabelStudioClient
) -> None:
    changes = Changes()
    receiver = WebhookReceiver(changes, secret="a-long-random-secret").start()
    try:
        url = f"http://127.0.0.1:{receiver.port}/webhook"
        assert (
            requests.post(url, json={"action": "ANNOTATION_CREATED"}, timeout=5).status_code == 401
        )
        wrong = {"X-Labelplan-Secret": "a-long-random-secreT"}
        assert requests.post(url, json={}, headers=wrong, timeout=5).status_code == 401
        good = {"X-Labelplan-Secret": "a-long-random-secret"}
        assert requests.post(url, data=b"{not json", headers=good, timeout=5).status_code == 400
        admin.register_webhook(small["project"], url, secret="a-long-random-secret")
        served = label(make_member("annotator"), admin, small, 2)
        assert changes.wake.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not set(served) <= changes.changed:
            time.sleep(0.1)
        assert set(served) <= changes.changed
    finally:
        receiver.stop()


def test_the_queue_follows_quota_changes_within_one_pass(
    small: dict[str, Any], make_member: Callable[[str], Member], admin: LabelStudioClient
) -> None:
    """Labels reach the plan in the next pass; once the rare quota is met its lane yields."""
    plan_text = PLAN.replace("weekly_min: 30", "weekly_min: 3")
    service = SyncService(
        admin,
        small["store"],
        parse_plan(plan_text),
        small["service"].settings,
        scorer=small["backend"],
    )
    report = service.run_pass()

    def bicycle(summary: dict[str, Any]) -> dict[str, Any]:
        return next(c for c in summary["classes"] if c["name"] == "bicycle")

    def share(lane: str) -> float:
        entries = service.last_queue.entries  # type: ignore[union-attr]
        return sum(e.lane == lane for e in entries) / len(entries)

    assert bicycle(report.summary)["labeled"] == 0
    before = share("quota:bicycle")
    member = make_member("annotator")
    bikes = 0
    while bikes < 3:
        served = label(member, admin, small, 1)
        bikes += small["truth"][served[0]] == "bicycle"
    report = service.run_pass()
    assert bicycle(report.summary)["labeled"] == 3  # the new state, within one pass
    assert share("quota:bicycle") < before  # met: the lane yields its time to the others


def test_a_backend_connection_resetting_model_version_is_put_back(
    small: dict[str, Any], admin: LabelStudioClient
) -> None:
    service = small["service"]
    service.run_pass()
    admin.write_predictions(small["project"], [admin_prediction(small)])
    admin.update_project(small["project"], model_version="someone-elses-model")
    report = service.run_pass()
    assert report.restored == ["model_version 'someone-elses-model' -> 'labelplan-queue'"]
    assert admin.read_project(small["project"]).model_version == QUEUE_VERSION


def admin_prediction(setup: dict[str, Any]) -> Any:
    from labelplan.labelstudio import NewPrediction

    return NewPrediction(setup["tasks"][-1], 0.5, "someone-elses-model")


def test_sync_error_is_raised_for_a_plan_the_project_cannot_serve(
    make_project: Callable[..., Any], admin: LabelStudioClient, tmp_path: Path
) -> None:
    project_id, _ = make_project([{"text": "x"}])
    service = SyncService(
        admin, open_store(str(tmp_path / "x.sqlite3")), parse_plan(PLAN), SyncSettings(project_id)
    )
    with pytest.raises(SyncError, match="not in project"):
        service.run_pass()
