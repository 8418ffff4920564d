"""Review, escalation and metrics write-back against a real Label Studio with several members.

The sync runs its real passes (check -> ... -> enable -> review -> metrics); annotators are
invited members using Label Studio's own label stream (``/next``) or submitting by task id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from labelplan.cli import app
from labelplan.labelstudio import LabelStudioClient, choices_result
from labelplan.localstudio import LocalStudio
from labelplan.plan import Plan, parse_plan
from labelplan.report import DESCRIPTION_BEGIN, DESCRIPTION_END
from labelplan.store import Store, open_store
from labelplan.sync import SyncService, SyncSettings

from .factories import Member
from .scenario import CONFIG, LABEL, Scenario, SimulatedBackend

REVIEW_PLAN = """
version: 1
seed: 3
preannotations: false
classes:
  bicycle: {{tier: must_not_miss, labels: [Bicycle], weekly_min: 5}}
  car: {{tier: nice_to_have, easy: true, labels: [Car]}}
  person: {{tier: nice_to_have, easy: true, labels: [Person]}}
review:
  small_lot: {small_lot}
  rates: {{must_not_miss: 0.0, nice_to_have: 0.0, experimental: 0.0}}
  escalation: {{experts: [{experts}]}}
  alarms: {{min_reviewed: 2}}
  annotator_quota_status: {quota_status}
  {more}
"""

CERTAIN = {
    "bicycle": {"Bicycle": 0.9, "Car": 0.05, "Person": 0.05},
    "car": {"Bicycle": 0.02, "Car": 0.9, "Person": 0.08},
    "person": {"Bicycle": 0.02, "Car": 0.08, "Person": 0.9},
}


def fixed_scenario(truth: list[str]) -> Scenario:
    """Tasks whose scores are far from the low-confidence band, so only the plan samples."""
    data = [{"text": f"frame {i}", "camera": f"cam-{i % 2}"} for i in range(len(truth))]
    return Scenario(data, truth, [None] * len(truth), [CERTAIN[c] for c in truth])


def setup(
    make_project: Callable[..., Any],
    admin: LabelStudioClient,
    tmp_path: Path,
    truth: list[str],
    *,
    small_lot: int,
    experts: list[str] = (),  # type: ignore[assignment]
    quota_status: bool = False,
) -> dict[str, Any]:
    scenario = fixed_scenario(truth)
    project_id, task_ids = make_project(scenario.data, label_config=CONFIG, title="review")
    store = open_store(str(tmp_path / "review.sqlite3"))
    plan = parse_plan(
        REVIEW_PLAN.format(
            small_lot=small_lot,
            experts=", ".join(experts),
            quota_status=str(quota_status).lower(),
            more="",
        )
    )
    service = SyncService(
        admin,
        store,
        plan,
        SyncSettings(project_id, head_size=20, front=10, metrics_every=0),
        scorer=SimulatedBackend(store, project_id, scenario, task_ids),
    )
    return {
        "project": project_id,
        "tasks": task_ids,
        "truth": dict(zip(task_ids, truth, strict=True)),
        "store": store,
        "plan": plan,
        "service": service,
    }


def submit(
    admin: LabelStudioClient, member: Member, project: int, task: int, label: str, lead: float
) -> None:
    control = admin.read_project(project).taxonomy.controls["label"]
    member.client.submit_annotation(task, choices_result(control, [label]), lead_time=lead)


def sampled(store: Store, project: int) -> set[int]:
    return {t for t, s in store.samples(project).items() if s.sampled}


def tab(admin: LabelStudioClient, project: int, title: str) -> list[int]:
    [view] = [v for v in admin.list_views(project) if v["data"].get("title") == title]
    return admin.view_task_ids(project, int(view["id"]))


# ---------------------------------------------------------------- blind second annotation


def test_sampled_tasks_are_served_to_a_second_annotator_and_never_back_to_the_first(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    s = setup(make_project, admin, tmp_path, ["bicycle", "car", "person", "car"] * 4, small_lot=2)
    alice, bob = make_member("annotator"), make_member("annotator")
    s["service"].run_pass()
    done = []
    for _ in range(6):
        task = alice.client.next_task(s["project"])
        assert task is not None
        submit(admin, alice, s["project"], task.id, LABEL[s["truth"][task.id]], 3.0)
        done.append(task.id)
    lanes_before = {t: {row.lane} for t, row in s["store"].queue(s["project"]).items()}
    report = s["service"].run_pass()
    chosen = sampled(s["store"], s["project"])
    # the first two of each of alice's lots (must_not_miss, nice_to_have) are reviewed in full
    assert 2 <= len(chosen) <= 4 and chosen <= set(done)
    assert report.review["reopened"] == len(chosen)
    for task_id in chosen:
        task = admin.read_task(task_id)
        assert task.overlap == 2 and not task.is_labeled
    # riskiest first: must-not-miss before nice-to-have, then higher inclusion probability
    decided = s["store"].samples(s["project"])
    tiers = {"must_not_miss": 0, "nice_to_have": 1, "experimental": 2}
    risk_order = sorted(chosen, key=lambda t: (tiers[decided[t].tier], -decided[t].probability, t))
    assert {decided[t].tier for t in chosen} == {"must_not_miss", "nice_to_have"}
    assert tab(admin, s["project"], "Review queue") == risk_order
    # ranking them for review keeps the lane that served them: the planner counts lane shares
    queue = s["store"].queue(s["project"])
    assert all(queue[t].lane in lanes_before[t] for t in chosen)
    for _ in range(5):  # alice keeps labeling: none of her sampled tasks comes back to her
        task = alice.client.next_task(s["project"])
        assert task is not None and task.id not in chosen
        submit(admin, alice, s["project"], task.id, LABEL[s["truth"][task.id]], 3.0)
    served = []
    for _ in range(len(chosen)):  # bob is served exactly the sampled tasks, first
        task = bob.client.next_task(s["project"])
        assert task is not None
        served.append(task.id)
        submit(admin, bob, s["project"], task.id, LABEL[s["truth"][task.id]], 4.0)
    assert set(served) == chosen
    s["service"].run_pass()
    for task_id in chosen:
        assert admin.read_task(task_id).is_labeled
    assert not set(tab(admin, s["project"], "Review queue")) & chosen


# ---------------------------------------------------------------- escalation


def test_a_disagreement_on_a_rare_class_reaches_the_escalations_tab_until_an_expert_decides(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    alice, bob, carol = (make_member("annotator") for _ in range(3))
    dana = make_member("reviewer")
    s = setup(
        make_project,
        admin,
        tmp_path,
        ["bicycle", "car", "car", "person"],
        small_lot=1,
        experts=[dana.email],
    )
    project, bike = s["project"], s["tasks"][0]
    s["service"].run_pass()
    submit(admin, alice, project, bike, "Bicycle", 5.0)
    s["service"].run_pass()
    assert bike in sampled(s["store"], project)
    task = bob.client.next_task(project)
    assert task is not None and task.id == bike
    submit(admin, bob, project, bike, "Car", 6.0)
    report = s["service"].run_pass()
    assert report.review["escalated"] == 1
    assert tab(admin, project, "Escalations") == [bike]
    assert admin.read_task(bike).overlap == 3  # one more annotator asked for
    task = carol.client.next_task(project)
    assert task is not None and task.id == bike
    submit(admin, carol, project, bike, "Bicycle", 7.0)
    s["service"].run_pass()
    # 2 of 3 agree: below the 0.75 threshold, so no majority decides on a rare class
    assert tab(admin, project, "Escalations") == [bike]
    assert admin.read_task(bike).overlap == 4
    assert s["store"].escalations(project)[bike].status == "escalated"
    submit(admin, dana, project, bike, "Bicycle", 9.0)  # the expert opens it from the tab
    report = s["service"].run_pass()
    assert report.review["settled"] == 1
    row = s["store"].escalations(project)[bike]
    assert (row.status, row.answer) == ("settled_by_expert", ("bicycle",))
    assert tab(admin, project, "Escalations") == []


def test_an_expert_alone_settles_an_escalation_and_the_task_stays_closed(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    dana = make_member("reviewer")
    s = setup(
        make_project,
        admin,
        tmp_path,
        ["car", "car", "person", "person"],
        small_lot=0,
        experts=[dana.email],
    )
    # a likely car that might be a bicycle: low confidence on a must-not-miss class escalates
    s["service"].scorer.scenario.probs[0] = {"Bicycle": 0.4, "Car": 0.55, "Person": 0.05}
    project, unsure = s["project"], s["tasks"][0]
    s["service"].run_pass()
    submit(admin, dana, project, unsure, "Car", 4.0)  # the expert happens to label it first
    first = s["service"].run_pass()
    assert first.review["escalated"] == 1 and admin.read_task(unsure).overlap == 2
    overlaps = []
    for _ in range(3):  # settled by the expert: closed once, and never re-opened
        s["service"].run_pass()
        overlaps.append(admin.read_task(unsure).overlap)
    assert overlaps == [1, 1, 1]
    assert s["store"].escalations(project)[unsure].status == "settled_by_expert"
    assert admin.read_task(unsure).is_labeled


# ---------------------------------------------------------------- write-back and metrics


def test_the_description_block_is_written_and_rewritten_without_touching_the_admins_text(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    tmp_path: Path,
) -> None:
    s = setup(
        make_project,
        admin,
        tmp_path,
        ["bicycle", "car", "person", "car"],
        small_lot=0,
        quota_status=True,
    )
    project = s["project"]
    alice = make_member("annotator")
    admin.update_project(
        project,
        description="Team notes:\nlabel partly hidden bicycles too.",
        expert_instruction="<p>Draw tight boxes.</p>",
    )
    s["service"].run_pass()
    first = admin.read_project(project).description
    assert first.startswith(
        "Team notes:\nlabel partly hidden bicycles too.\n\n" + DESCRIPTION_BEGIN
    )
    assert first.endswith(DESCRIPTION_END) and "bicycle [must_not_miss]: 0/5" in first
    edited = first.replace("Team notes:", "Team notes (v2):") + "\n\nContact: ops@example.com"
    admin.update_project(project, description=edited)
    submit(admin, alice, project, s["tasks"][0], "Bicycle", 5.0)
    s["service"].run_pass()
    second = admin.read_project(project).description
    assert second.startswith(
        "Team notes (v2):\nlabel partly hidden bicycles too.\n\n" + DESCRIPTION_BEGIN
    )
    assert second.endswith(DESCRIPTION_END + "\n\nContact: ops@example.com")
    assert second.count(DESCRIPTION_BEGIN) == 1 and "bicycle [must_not_miss]: 1/5" in second
    instructions = admin.read_project(project)
    assert instructions.expert_instruction.startswith("<p>Draw tight boxes.</p>")
    assert "bicycle: 1 of 5 (4 to go)" in instructions.expert_instruction
    assert instructions.show_instruction
    calls = dict(s["service"].run_pass().calls)
    assert admin.read_project(project).description == second  # unchanged: not rewritten
    assert calls.get("PATCH", 0) == 0


def test_metrics_match_hand_computed_values_on_a_small_fixed_scenario(
    make_project: Callable[..., Any],
    make_member: Callable[[str], Member],
    admin: LabelStudioClient,
    label_studio: LocalStudio,
    tmp_path: Path,
) -> None:
    s = setup(
        make_project,
        admin,
        tmp_path,
        ["bicycle", "bicycle", "car", "car", "person", "car"],
        small_lot=0,
    )
    project, t = s["project"], s["tasks"]
    alice, bob = make_member("annotator"), make_member("annotator")
    s["service"].run_pass()
    for task, label, lead in [
        (t[0], "Bicycle", 10),
        (t[1], "Bicycle", 20),
        (t[2], "Car", 4),
        (t[3], "Car", 6),
    ]:
        submit(admin, alice, project, task, label, lead)
    alice.client.skip_task(t[4])
    for task, label, lead in [(t[0], "Bicycle", 30), (t[1], "Car", 40), (t[2], "Car", 8)]:
        submit(admin, bob, project, task, label, lead)
    s["service"].run_pass()
    metrics = s["service"].last_metrics
    assert metrics is not None
    bicycle, car, person = (metrics.current(n) for n in ("bicycle", "car", "person"))
    assert bicycle is not None and car is not None and person is not None
    # by hand: t0 agreed bicycle; t1 disputed bicycle/car (escalated, counts for both); t2 agreed car
    assert (bicycle.count, bicycle.reviewed, bicycle.involved, bicycle.disagreement) == (
        2,
        2,
        2,
        0.5,
    )
    assert (car.count, car.reviewed, car.involved, car.disagreement) == (3, 2, 2, 0.5)
    # AC1 on bicycle present/absent over t0 [2,0], t1 [1,1], t2 [0,2]: (2/3 - 1/2) / (1/2)
    assert bicycle.ac1 == pytest.approx(1 / 3)
    assert bicycle.lead_time == pytest.approx(25.0)  # 10 20 30 40
    assert car.lead_time == pytest.approx(8.0)  # 4 6 8 20 40
    # every reviewed item had two annotators when first seen: pi = 1; t1 is unsettled = wrong
    assert bicycle.error_rate == pytest.approx(0.5) and car.error_rate == pytest.approx(0.5)
    assert person.skip_rate == pytest.approx(1.0) and person.count == 0
    totals = metrics.totals[-1]
    assert (totals.count, totals.reviewed, totals.skip_rate) == (4, 3, pytest.approx(1 / 8))
    assert metrics.escalations_open == 1
    assert {(a.kind, a.subject) for a in metrics.alarms} >= {
        ("disagreement", "bicycle"),
        ("disagreement", "car"),
    }
    # the report command reads the same numbers from the sync's store
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        ["report", "--project", str(project), "--out", str(out)],
        env={"LABELPLAN_DB": str(tmp_path / "review.sqlite3")},
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "metrics.json").read_text())
    row = next(r for r in data["classes"] if r["week"] == metrics.week and r["name"] == "bicycle")
    assert (row["count"], row["reviewed"], row["disagreement"]) == (2, 2, 0.5)
    assert (out / "report.html").read_text().count("<svg") > 4
    assert Plan.model_validate_json(s["store"].cursor(project, "plan") or "{}") == s["plan"]
