"""How review happens on a server with and without a review API, and the sync saying which.

On the real Label Studio 1.23.2 (Community): no review API, so the blind second annotation, and
the sync says so. The Enterprise path runs against the real server behind
:mod:`.enterprise_standin` (the three Enterprise endpoints, shaped by the SDK's types); its
requests are compared with what the SDK's own generated Enterprise client sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from label_studio_sdk import LabelStudio
from typer.testing import CliRunner

from labelplan.cli import app
from labelplan.labelstudio import LabelStudioClient
from labelplan.ledger import week_of
from labelplan.localstudio import LocalStudio
from labelplan.plan import parse_plan
from labelplan.report import DESCRIPTION_BEGIN
from labelplan.store import open_store
from labelplan.sync import SyncError, SyncService, SyncSettings

from .enterprise_standin import EnterpriseStandIn
from .factories import Member
from .scenario import CONFIG, SimulatedBackend
from .test_review_sync import REVIEW_PLAN, fixed_scenario, sampled, submit, tab


def plan_text(mode: str, reviewers: list[str], experts: list[str]) -> str:
    """The review plan of ``test_review_sync`` with a review mode and reviewers."""
    return REVIEW_PLAN.format(
        small_lot=2,
        experts=", ".join(experts),
        quota_status="false",
        more=f"mode: {mode}\n  reviewers: [{', '.join(reviewers)}]",
    )


TRUTH = ["bicycle", "car", "person", "car"] * 3

runner = CliRunner()


@pytest.fixture
def standin(label_studio: LocalStudio) -> Iterator[EnterpriseStandIn]:
    server = EnterpriseStandIn(label_studio.url).start()
    try:
        yield server
    finally:
        server.stop()


def service_for(
    client: LabelStudioClient,
    make_project: Callable[..., Any],
    tmp_path: Path,
    *,
    mode: str = "auto",
    reviewers: list[str] = (),  # type: ignore[assignment]
    experts: list[str] = (),  # type: ignore[assignment]
    clock: Callable[[], datetime] | None = None,
) -> tuple[SyncService, int, dict[int, str]]:
    scenario = fixed_scenario(TRUTH)
    project_id, task_ids = make_project(scenario.data, label_config=CONFIG, title="review api")
    store = open_store(str(tmp_path / "review-api.sqlite3"))
    plan = parse_plan(plan_text(mode, list(reviewers), list(experts)))
    service = SyncService(
        client,
        store,
        plan,
        SyncSettings(project_id, head_size=20, front=10),
        scorer=SimulatedBackend(store, project_id, scenario, task_ids),
        **({"clock": clock} if clock else {}),
    )
    return service, project_id, dict(zip(task_ids, TRUTH, strict=True))


# ---------------------------------------------------------------- Community: no review API


def test_community_edition_has_no_review_api_and_the_sync_says_so(
    make_project: Callable[..., Any], admin: LabelStudioClient, tmp_path: Path
) -> None:
    service, project, _ = service_for(admin, make_project, tmp_path)
    api = admin.review_api(project)
    assert not api.available and api.edition == "Community"
    assert "no review API" in api.reason and "404" in api.reason
    report = service.run_pass()
    assert report.review["mode"] == "second_annotation"
    description = admin.read_project(project).description
    block = description[description.index(DESCRIPTION_BEGIN) :]
    assert "Review by blind second annotation (Label Studio Community 1.23.2: this server " in block
    assert service.last_metrics is not None
    assert service.last_metrics.review_by.startswith("blind second annotation")


def test_a_plan_that_requires_the_review_api_stops_before_writing_on_community(
    label_studio: LocalStudio,
    make_project: Callable[..., Any],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    service, project, _ = service_for(admin, make_project, tmp_path, mode="review_api")
    with pytest.raises(SyncError, match=r"review\.mode is review_api, but Label Studio Community"):
        service.run_pass()
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_text("review_api", [], []))
    result = runner.invoke(
        app,
        ["sync", "--plan", str(plan_file), "--project", str(project), "--once"],
        env={
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": label_studio.token,
            "LABELPLAN_DB": str(tmp_path / "cli.sqlite3"),
        },
    )
    assert result.exit_code == 2, result.output
    assert "use review.mode: auto or second_annotation" in " ".join(result.stderr.split()).lower()
    assert admin.list_predictions(project) == []  # nothing was written
    assert admin.read_project(project).description == ""


# ---------------------------------------------------------------- the Enterprise calls


def test_labelplans_review_api_calls_are_the_sdks_generated_enterprise_calls(
    label_studio: LocalStudio, standin: EnterpriseStandIn, make_project: Callable[..., Any]
) -> None:
    project, tasks = make_project([{"text": "a"}, {"text": "b"}], label_config=CONFIG)
    standin.add_review(project, 41, 7, True, created_at=datetime(2024, 5, 7, tzinfo=UTC))
    standin.add_review(
        project,
        42,
        7,
        False,
        result=[{"type": "choices", "from_name": "label", "value": {"choices": ["Car"]}}],
    )
    ours = LabelStudioClient(standin.url, label_studio.token, retry_seconds=5)
    sdk = LabelStudio(base_url=standin.url, api_key=label_studio.token)

    got = ours.list_reviews(project)
    theirs = sdk.annotation_reviews.list(annotation_task_project=project)
    assert [(r.annotation_id, r.accepted, r.reviewer, r.labels) for r in got] == [
        (41, True, 7, None),
        (42, False, 7, ("Car",)),
    ]
    assert [(r.annotation, r.accepted, r.created_by) for r in theirs] == [
        (41, True, 7),
        (42, False, 7),
    ]
    ours.assign_for_review(project, tasks, [7, 9])
    sdk.projects.assignments.bulk_assign(
        id=project,
        selected_items={"all": False, "included": tasks},  # type: ignore[arg-type]
        type="RE",
        users=[7, 9],
    )
    calls = [(r.method, r.path, r.query, r.body) for r in standin.received]
    assert calls[0] == calls[1]  # the list: same path and query as the SDK's
    assert calls[2] == calls[3]  # the assignment: same path and body as the SDK's
    assert calls[2][3] == {
        "selectedItems": {"all": False, "included": tasks},
        "type": "RE",
        "users": [7, 9],
    }
    api = ours.review_api(project)
    assert api.available and api.edition == "Enterprise"


# ---------------------------------------------------------------- the Enterprise path end to end


def test_with_a_review_api_sampled_tasks_are_assigned_and_reviews_settle_and_judge_lots(
    label_studio: LocalStudio,
    standin: EnterpriseStandIn,
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    alice = make_member("annotator")
    rita, dana = make_member("reviewer"), make_member("reviewer")
    now = [datetime.now(UTC)]
    client = LabelStudioClient(standin.url, label_studio.token, retry_seconds=20)
    service, project, truth = service_for(
        client,
        make_project,
        tmp_path,
        reviewers=[rita.email],
        experts=[dana.email],
        clock=lambda: now[0],
    )
    store = service.store
    first = service.run_pass()
    assert first.review["mode"] == "review_api"
    by_class: dict[str, list[int]] = {}
    for task_id, name in truth.items():
        by_class.setdefault(name, []).append(task_id)
    bike, car, person, car2 = (
        by_class["bicycle"][0],
        by_class["car"][0],
        by_class["person"][0],
        by_class["car"][1],
    )
    for task_id, label in [(bike, "Bicycle"), (car, "Car"), (person, "Car"), (car2, "Car")]:
        submit(admin, alice, project, task_id, label, 3.0)  # alice calls a person a car
    report = service.run_pass()
    # small_lot 2: alice's first two items of each tier this week; the person counts as
    # nice_to_have (predicted person, labeled car)
    chosen = sampled(store, project)
    assert chosen == {bike, car, person}
    # assigned to the reviewer through the review API, once; no second annotation asked for
    assert report.review["assigned"] == 3 and report.review["reopened"] == 0
    assert standin.assignments() == [
        {
            "selectedItems": {"all": False, "included": sorted(chosen)},
            "type": "RE",
            "users": [rita.user_id],
        }
    ]
    for task_id in chosen:
        assert admin.read_task(task_id).overlap == 1
    assert set(tab(admin, project, "Review queue")) == chosen
    service.run_pass()
    assert len(standin.assignments()) == 1  # not assigned again

    # rita accepts the car, corrects the person, rejects the bicycle without a correction
    annotation = {t: admin.read_task(t).annotations[0].id for t in chosen}
    fixed = [{"type": "choices", "from_name": "label", "to_name": "text",
              "value": {"choices": ["Person"]}}]  # fmt: skip
    standin.add_review(project, annotation[car], rita.user_id, True)
    standin.add_review(project, annotation[person], rita.user_id, False, result=fixed)
    standin.add_review(project, annotation[bike], rita.user_id, False)
    report = service.run_pass()
    assert tab(admin, project, "Review queue") == [bike]  # only the open escalation is left
    assert report.review["escalated"] == 1
    assert tab(admin, project, "Escalations") == [bike]
    # rita's verdict is one opinion and alice's annotation the other: one more annotation asked
    assert admin.read_task(bike).overlap == 2
    standin.add_review(project, annotation[bike], dana.user_id, True)  # the expert decides
    report = service.run_pass()
    assert report.review["settled"] == 1
    row = store.escalations(project)[bike]
    assert (row.status, row.answer) == ("settled_by_expert", ("bicycle",))
    assert tab(admin, project, "Escalations") == []
    # decided: the annotation asked for is taken back, so nobody is served the task again
    assert report.review["closed"] == 1
    closed = admin.read_task(bike)
    assert closed.overlap == 1 and closed.is_labeled

    # lots are judged a day after the week ends, not before
    end = week_of(now[0], service.plan).end
    now[0] = end + timedelta(hours=1)
    assert service.run_pass().review["lots_judged"] == 0
    now[0] = end + timedelta(hours=25)
    assert service.run_pass().review["lots_judged"] == 2
    lots = {lot.tier: lot for lot in store.lots(project) if lot.annotator == alice.user_id}
    assert (lots["must_not_miss"].reviewed, lots["must_not_miss"].defects) == (1, 0)
    assert (lots["nice_to_have"].reviewed, lots["nice_to_have"].defects) == (2, 1)
    description = admin.read_project(project).description
    assert "Review by Label Studio's review API (Label Studio Enterprise 1.23.2" in description


# ---------------------------------------------------------------- how often the block is written


def test_the_metrics_block_is_rewritten_at_most_every_minute(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    now = [datetime.now(UTC)]
    service, project, truth = service_for(admin, make_project, tmp_path, clock=lambda: now[0])
    assert service.settings.metrics_every == 60.0  # the default
    service.run_pass()
    first = admin.read_project(project).description
    assert "bicycle [must_not_miss]: 0/5" in first
    alice = make_member("annotator")
    bike = next(t for t, name in truth.items() if name == "bicycle")
    submit(admin, alice, project, bike, "Bicycle", 3.0)
    now[0] += timedelta(seconds=30)
    report = service.run_pass()
    assert report.pulled >= 1 and admin.read_project(project).description == first
    now[0] += timedelta(seconds=31)
    service.run_pass()
    assert "bicycle [must_not_miss]: 1/5" in admin.read_project(project).description


def test_reviews_are_read_once_each_across_pages_whatever_host_next_names(
    label_studio: LocalStudio, standin: EnterpriseStandIn, make_project: Callable[..., Any]
) -> None:
    project, _ = make_project([{"text": "a"}], label_config=CONFIG)
    for annotation in range(101, 108):
        standin.add_review(project, annotation, 7, annotation % 2 == 0)
    standin.page_size = 3
    ours = LabelStudioClient(standin.url, label_studio.token, retry_seconds=5)
    got = ours.list_reviews(project)
    assert [r.annotation_id for r in got] == list(range(101, 108))
    pages = [r.query.get("page", ["1"])[0] for r in standin.received]
    assert pages == ["1", "2", "3"]  # each page asked once, from the stand-in, not elsewhere


def test_a_refused_assignment_is_retried_and_an_unknown_outcome_never_sent_twice(
    label_studio: LocalStudio,
    standin: EnterpriseStandIn,
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    alice, rita = make_member("annotator"), make_member("reviewer")
    client = LabelStudioClient(standin.url, label_studio.token, retry_seconds=5)
    service, project, truth = service_for(client, make_project, tmp_path, reviewers=[rita.email])
    service.run_pass()
    car = next(t for t, name in truth.items() if name == "car")
    submit(admin, alice, project, car, "Car", 3.0)
    standin.assignment_status = 400  # refused: nothing was assigned, so it is asked again
    refused = service.run_pass()
    assert refused.review["assigned"] == 0 and service.store.assignments(project) == {}
    assert any("could not assign" in p for p in refused.problems)
    standin.assignment_status = 200
    assert service.run_pass().review["assigned"] == 1
    assert service.store.assignments(project) == {car: (rita.user_id,)}
    person = next(t for t, name in truth.items() if name == "person")
    submit(admin, alice, project, person, "Person", 3.0)
    standin.assignment_status = 500  # the outcome is unknown: recorded, reported, never resent
    unknown = service.run_pass()
    assert any("outcome unknown" in p for p in unknown.problems)
    sent = len(standin.assignments())
    service.run_pass()
    assert len(standin.assignments()) == sent == 3
    assert set(service.store.assignments(project)) == {car, person}
