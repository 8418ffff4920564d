"""The real Label Studio the integration tests talk to, and factories to fill it.

One server per test session (``label-studio start``, 1.23.2, SQLite in a temp dir, a free
port), started only when a test under ``tests/integration`` runs, and stopped afterwards —
process group and all — whatever the outcome. Every test here is marked ``labelstudio`` so
``pytest -m "not labelstudio"`` runs the pure tests alone.

The admin's credentials come from the environment when set (``LABELPLAN_TEST_ADMIN_EMAIL``,
``LABELPLAN_TEST_ADMIN_PASSWORD``, ``LABELPLAN_TEST_ADMIN_TOKEN``) and default to throwaway
values otherwise: the server lives in a temp dir and only listens on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from labelplan.labelstudio import LabelStudioClient, choices_result
from labelplan.localstudio import LocalStudio

from .factories import TEXT_CONFIG, Member


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.labelstudio)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStudio]:
    """A running Label Studio 1.23.2; its log is shown if it fails to come up in 180 s."""
    env = os.environ
    server = LocalStudio(
        data_dir=tmp_path_factory.mktemp("label-studio"),
        email=env.get("LABELPLAN_TEST_ADMIN_EMAIL", "admin@labelplan.test"),
        password=env.get("LABELPLAN_TEST_ADMIN_PASSWORD", "admin-password-for-tests"),
        token=env.get("LABELPLAN_TEST_ADMIN_TOKEN", "labelplan-test-admin-token"),
    )
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def admin(label_studio: LocalStudio) -> LabelStudioClient:
    """The admin, connected with the legacy token."""
    return LabelStudioClient(label_studio.url, label_studio.token, retry_seconds=20)


_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def make_member(admin: LabelStudioClient, label_studio: LocalStudio) -> Callable[[str], Member]:
    """Invite a new organization member (annotator or reviewer) and connect as them."""

    def make(role: str = "annotator") -> Member:
        email = f"{role}{next(_numbers)}@labelplan.test"
        token = admin.invite_member(email, password=f"pw-{email}")
        client = LabelStudioClient(label_studio.url, token, retry_seconds=20)
        return Member(email=email, user_id=int(client.whoami()["id"]), client=client)

    return make


@pytest.fixture
def make_project(admin: LabelStudioClient) -> Callable[..., tuple[int, list[int]]]:
    """Create a project from a label config and import tasks; returns (project id, task ids)."""

    def make(
        tasks: Sequence[dict[str, Any]] = (),
        *,
        label_config: str = TEXT_CONFIG,
        title: str = "labelplan test project",
        **settings: Any,
    ) -> tuple[int, list[int]]:
        project_id = admin.create_project(title, label_config, **settings)
        task_ids = admin.import_tasks(project_id, list(tasks)) if tasks else []
        return project_id, task_ids

    return make


@pytest.fixture
def annotate(admin: LabelStudioClient) -> Callable[..., int]:
    """Submit a Choices annotation on a task as a member; returns the annotation id."""

    def submit(
        member: Member,
        project_id: int,
        task_id: int,
        label: str,
        *,
        control: str = "label",
        lead_time: float | None = 5.0,
    ) -> int:
        taxonomy = admin.read_project(project_id).taxonomy
        result = choices_result(taxonomy.controls[control], [label])
        return member.client.submit_annotation(task_id, result, lead_time=lead_time)

    return submit
