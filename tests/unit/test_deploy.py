"""The deployment files, checked as far as a machine without Docker can check them.

What is not checked here (no Docker on the build machine): that the images build, that the pinned
tags exist on Docker Hub, and that the services start and become healthy together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILES = [DEPLOY / "backend.Dockerfile", DEPLOY / "sync.Dockerfile"]
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")
PINNED_PYTHON = re.compile(r"^FROM python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def env_example(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not NAME=value"
            values[name.strip()] = value
    return values


def test_compose_parses_and_has_every_service_the_deployment_needs() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "label-studio", "backend", "backend-worker", "sync"} <= set(
        services
    )
    assert services["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"


def test_every_service_has_a_healthcheck_and_a_restart_policy() -> None:
    for name, service in compose()["services"].items():
        check = service.get("healthcheck", {})
        assert check.get("test"), f"service {name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"service {name} is not restarted"


def test_every_image_is_pinned_to_a_version() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image!r} is not pinned"
        assert re.search(r":\d+\.\d+", image), f"{name}: {image!r} has no exact version"


def test_every_variable_compose_uses_is_in_the_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    known = env_example(DEPLOY / ".env.example")
    assert used, "the compose file uses no variables: the check would prove nothing"
    assert sorted(used - set(known)) == []
    assert sorted(set(known) - used) == [], "variables in .env.example that compose never uses"


def test_label_studio_allows_private_network_backends_and_says_why() -> None:
    service = compose()["services"]["label-studio"]
    environment = service["environment"]
    assert environment["ML_BLOCK_LOCAL_IP"] == "false"
    assert environment["SSRF_PROTECTION_ENABLED"] == "false"
    text = COMPOSE.read_text()
    assert "SECURITY TRADE-OFF" in text and "172.16.0.0/12" in text
    assert "USER_ADDITIONAL_BANNED_SUBNETS" in text


def test_backend_runs_gunicorn_with_workers_and_threads_and_a_job_worker() -> None:
    services = compose()["services"]
    environment = services["backend"]["environment"]
    assert environment["WORKERS"] == "${WORKERS}" and environment["THREADS"] == "${THREADS}"
    assert environment["REDIS_URL"].startswith("redis://")
    worker = services["backend-worker"]
    assert (
        worker["command"][:2] == ["rq", "worker"] and worker["command"][-1] == "labelplan-backend"
    )
    assert worker["environment"] == environment
    from labelplan_backend.jobs import RQ_QUEUE

    assert RQ_QUEUE == "labelplan-backend"


def test_sync_runs_the_sync_command_with_the_options_it_has() -> None:
    from typer.main import get_command

    from labelplan.cli import app

    sync = compose()["services"]["sync"]
    command = sync["command"]
    assert command[:2] == ["labelplan", "sync"]
    options = {p.opts[0] for p in get_command(app).commands["sync"].params if p.opts}  # type: ignore[attr-defined]
    given = {arg for arg in command[2:] if arg.startswith("--")}
    assert given <= options, sorted(given - options)
    assert "8765" in sync["healthcheck"]["test"][-1]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pin_the_base_image_and_run_as_a_non_root_user(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 1 and PINNED_PYTHON.match(froms[0]), froms
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, f"{dockerfile.name} has no USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


def test_paths_compose_refers_to_exist() -> None:
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            context = (DEPLOY / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
    defaults = env_example(DEPLOY / ".env.example")
    for variable in ("LABELPLAN_PLAN_FILE", "LABELPLAN_MODEL_DIR"):
        assert (DEPLOY / defaults[variable]).exists(), (
            f"{variable}={defaults[variable]} does not exist"
        )


def test_the_backend_entry_point_compose_and_systemd_start_exists() -> None:
    assert (ROOT / "backend" / "_wsgi.py").is_file()
    assert (ROOT / "backend" / "gunicorn.conf.py").is_file()
    backend = (DEPLOY / "backend.Dockerfile").read_text()
    assert '"_wsgi:app"' in backend and "gunicorn.conf.py" in backend


def test_systemd_units_read_only_variables_the_env_example_sets() -> None:
    known = env_example(DEPLOY / "labelplan.env.example")
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "User=labelplan" in text and "EnvironmentFile=/etc/labelplan/labelplan.env" in text
        for name in VARIABLE.findall(text):
            assert (
                name in known or f"# {name}=" in (DEPLOY / "labelplan.env.example").read_text()
            ), (
                unit.name,
                name,
            )
