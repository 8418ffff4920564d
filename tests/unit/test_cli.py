"""The plan-file and planning commands, run the way a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from labelplan.cli import app

ROOT = Path(__file__).resolve().parents[2]
PLAN = str(ROOT / "examples" / "plan.yaml")
SNAPSHOT = str(ROOT / "examples" / "snapshot.jsonl")
NOW = "2024-05-08T12:00:00+02:00"
runner = CliRunner()


def test_validate_prints_ok_for_a_good_plan() -> None:
    result = runner.invoke(app, ["validate", PLAN])
    assert result.exit_code == 0
    assert result.stdout.strip() == "ok"


def test_validate_lists_every_problem_with_path_value_and_allowed_values(tmp_path: Path) -> None:
    bad = tmp_path / "plan.yaml"
    bad.write_text("classes:\n  bicycle: {tier: must-not-miss, colour: red}\ncontrol_share: -0.1\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "3 problem(s)" in result.stderr
    assert "classes.bicycle.tier" in result.stderr
    assert "got 'must-not-miss'" in result.stderr
    assert "allowed: must_not_miss, nice_to_have or experimental" in result.stderr
    assert "classes.bicycle.colour" in result.stderr and "weekly_min" in result.stderr
    assert "control_share" in result.stderr and "allowed: a number >= 0" in result.stderr


def test_schema_prints_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "labelplan sampling plan"
    assert "ClassPlan" in schema["$defs"]


def test_plan_writes_the_queue_head_as_jsonl_and_the_summary_to_stderr() -> None:
    args = ["plan", "--plan", PLAN, "--tasks", SNAPSHOT, "--now", NOW, "--limit", "25"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["rank"] for e in entries] == list(range(1, 26))
    assert set(entries[0]) == {"rank", "id", "lane", "reason"}
    assert any(e["lane"].startswith("quota:") for e in entries)
    assert "quota status" in result.stderr
    again = runner.invoke(app, args)
    assert again.stdout == result.stdout


def test_plan_prints_a_table_on_request() -> None:
    args = ["plan", "--plan", PLAN, "--tasks", SNAPSHOT, "--now", NOW, "--limit", "3"]
    result = runner.invoke(app, [*args, "--format", "table"])
    assert result.exit_code == 0, result.stderr
    assert "queue head (3 of 3 requested)" in result.stdout
    assert "reason" in result.stdout


def test_plan_rejects_an_unknown_format_and_a_bad_snapshot(tmp_path: Path) -> None:
    args = ["plan", "--plan", PLAN, "--tasks", SNAPSHOT, "--now", NOW]
    assert runner.invoke(app, [*args, "--format", "csv"]).exit_code == 2
    broken = tmp_path / "tasks.jsonl"
    broken.write_text('{"id": 1, "scores": {"bicycle": 3}}\n')
    result = runner.invoke(app, ["plan", "--plan", PLAN, "--tasks", str(broken)])
    assert result.exit_code == 2
    assert "tasks.jsonl:1" in result.stderr
