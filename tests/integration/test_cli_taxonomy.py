"""`labelplan taxonomy` against a real Label Studio: what a plan's classes can map to."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from labelplan.cli import app
from labelplan.localstudio import LocalStudio

from .factories import IMAGE_CONFIG

runner = CliRunner()


def env_for(server: LocalStudio, key: str | None = None) -> dict[str, str]:
    return {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": key or server.token}


def test_taxonomy_prints_the_class_controls_as_json(
    label_studio: LocalStudio, make_project: Callable[..., Any]
) -> None:
    project_id, _ = make_project(label_config=IMAGE_CONFIG)
    result = runner.invoke(
        app, ["taxonomy", "--project", str(project_id), "--json"], env=env_for(label_studio)
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["controls"]["box"]["labels"] == ["car", "bicycle"]
    assert shown["data_keys"] == ["image"]


def test_taxonomy_table_lists_labels(
    label_studio: LocalStudio, make_project: Callable[..., Any]
) -> None:
    project_id, _ = make_project()
    result = runner.invoke(
        app, ["taxonomy", "--project", str(project_id)], env=env_for(label_studio)
    )
    assert result.exit_code == 0, result.output
    assert "cat, dog, bird" in result.stdout


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["--project", "424242"], None, "project 424242 does not exist"),
        (["--project", "1"], "wrong-token", "rejected the API key"),
    ],
)
def test_taxonomy_errors_are_actionable_and_exit_2(
    label_studio: LocalStudio, args: list[str], key: str | None, message: str
) -> None:
    result = runner.invoke(app, ["taxonomy", *args], env=env_for(label_studio, key))
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert label_studio.token not in result.output
