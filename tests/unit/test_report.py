"""What the team sees: the description block, the quota status, the report files, /metrics."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from labelplan.metrics import Metrics, Rating, TaskFacts, compute
from labelplan.plan import parse_plan
from labelplan.report import (
    DESCRIPTION_BEGIN,
    DESCRIPTION_END,
    merge_description,
    merge_instructions,
    metrics_csv,
    prometheus_text,
    write_report,
)
from labelplan.webhooks import Changes, WebhookReceiver

PLAN = parse_plan(
    "classes: {bicycle: {tier: must_not_miss, weekly_min: 3}, car: {tier: nice_to_have, easy: true}}"
    "\nreview: {}"
)
NOW = datetime(2024, 5, 15, 12, tzinfo=UTC)


def metrics(bicycles: int = 1) -> Metrics:
    tasks = [
        TaskFacts(
            i,
            (Rating(1, frozenset({"bicycle"}), NOW - timedelta(hours=1), 12.0),),
            {"bicycle": 0.9},
        )
        for i in range(bicycles)
    ]
    tasks.append(TaskFacts(99, (Rating(1, frozenset({"car"}), NOW, 3.0),), {"car": 0.9}))
    return compute(tasks, PLAN, NOW, weeks=3)


def test_the_metrics_block_is_appended_below_the_admins_text() -> None:
    admin = "Label every bicycle, even partly hidden ones.\nAsk Dana when unsure."
    merged = merge_description(admin, metrics())
    assert merged.startswith(admin + "\n\n" + DESCRIPTION_BEGIN)
    assert merged.endswith(DESCRIPTION_END)
    assert "bicycle [must_not_miss]: 1/3" in merged


def test_rewriting_the_block_replaces_it_and_keeps_text_around_it_byte_for_byte() -> None:
    first = merge_description("Intro.", metrics(1))
    edited = "New intro, edited by the admin.  " + first[len("Intro.") :] + "\n\nA footer note.\n"
    again = merge_description(edited, metrics(2))
    assert again.startswith("New intro, edited by the admin.  \n\n" + DESCRIPTION_BEGIN)
    assert again.endswith(DESCRIPTION_END + "\n\nA footer note.\n")
    assert again.count(DESCRIPTION_BEGIN) == 1 and "bicycle [must_not_miss]: 2/3" in again
    assert merge_description(again, metrics(2)) == again


def test_an_empty_description_gets_just_the_block() -> None:
    assert merge_description("", metrics()).startswith(DESCRIPTION_BEGIN)


def test_the_quota_status_is_replaced_inside_the_instructions() -> None:
    admin = "<p>Draw tight boxes.</p>"
    first = merge_instructions(admin, metrics(1))
    assert first.startswith(admin) and "bicycle: 1 of 3 (2 to go)" in first
    second = merge_instructions(first + "<p>Thanks!</p>", metrics(3))
    assert second.startswith(admin) and second.endswith("<p>Thanks!</p>")
    assert "bicycle: 3 of 3 (met)" in second and second.count("labelplan-quota-status") == 1


def test_prometheus_text_follows_the_exposition_format() -> None:
    text = prometheus_text(metrics(2), project_id=7)
    assert 'labelplan_class_items{project="7",class="bicycle",tier="must_not_miss"} 2' in text
    assert 'labelplan_class_quota{project="7",class="bicycle",tier="must_not_miss"} 3' in text
    sample = re.compile(r'^[a-z_]+\{([a-z_]+="[^"]*",?)+\} -?[0-9.e+-]+$')
    for line in text.strip().splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or sample.match(line), line
    names = re.findall(r"^# TYPE (\S+) gauge$", text, flags=re.MULTILINE)
    assert len(names) == len(set(names))


def test_report_files_hold_the_same_numbers(tmp_path: Path) -> None:
    found = metrics(2)
    paths = write_report(found, tmp_path / "out", "project 7", disagreement_limit=0.15)
    assert [p.name for p in paths] == ["report.html", "metrics.json", "metrics.csv"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<svg") >= 4 + 4 * len(PLAN.classes)
    assert "items vs quota" in page and "quota 3" in page
    data = json.loads((tmp_path / "out" / "metrics.json").read_text())
    rows = list(csv.DictReader(io.StringIO(metrics_csv(found))))
    assert len(rows) == len(data["classes"]) == 3 * len(PLAN.classes)
    current = [r for r in rows if r["week"] == found.week and r["name"] == "bicycle"]
    assert current[0]["count"] == "2" and current[0]["quota"] == "3"


def test_the_receiver_serves_the_published_metrics_without_the_webhook_secret() -> None:
    receiver = WebhookReceiver(Changes(), secret="s3cret-for-tests").start()
    try:
        receiver.exposition.publish(prometheus_text(metrics(), project_id=3))
        answer = requests.get(f"http://127.0.0.1:{receiver.port}/metrics", timeout=5)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert 'labelplan_class_items{project="3",class="bicycle"' in answer.text
        assert requests.get(f"http://127.0.0.1:{receiver.port}/health", timeout=5).ok
    finally:
        receiver.stop()


def test_a_block_that_differs_only_in_its_time_is_not_rewritten() -> None:
    """The sync writes the description only when the numbers change, not on every clock tick."""
    from labelplan.report import DESCRIPTION_BEGIN, DESCRIPTION_END, merge_description

    stale = f"Admin text\n\n{DESCRIPTION_BEGIN}\nWeek of W (as of 2000-01-01T00:00:00+00:00)\nold numbers\n{DESCRIPTION_END}"
    current = metrics()
    fresh = merge_description(stale, current)
    assert fresh != stale  # the numbers changed: rewritten
    older = fresh.replace(current.generated_at, "1999-12-31T23:59:59+00:00")
    again = merge_description(older, current)
    assert (
        again.endswith(DESCRIPTION_END) and "1999-12-31T23:59:59" in again
    )  # only the time differs: kept


def test_the_block_and_the_report_say_how_review_is_done(tmp_path: Path) -> None:
    how = "blind second annotation (Label Studio Community 1.23.2: this server has no review API)"
    said = compute(
        [TaskFacts(99, (Rating(1, frozenset({"car"}), NOW, 3.0),), {"car": 0.9})],
        PLAN,
        NOW,
        weeks=3,
        review_by=how,
    )
    assert f"Review by {how}" in merge_description("", said)
    assert "Review by" not in merge_description("", metrics())  # unknown: nothing claimed
    written = {p.name: p for p in write_report(said, tmp_path, "t")}
    assert f"Review by {how}." in written["report.html"].read_text()
    assert json.loads(written["metrics.json"].read_text())["review_by"] == how
