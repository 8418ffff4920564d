"""The Label Studio calls the review adds: members by email, serving re-opened tasks first, tab contents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labelplan.labelstudio import LabelStudioClient

from .factories import Member

TEXTS = [{"text": f"item {i}"} for i in range(6)]


def test_members_are_listed_by_email(
    make_member: Callable[[str], Member], admin: LabelStudioClient
) -> None:
    reviewer = make_member("reviewer")
    users = admin.list_users()
    assert users[reviewer.email.lower()] == reviewer.user_id


def test_overlap_first_is_switched_on_and_read_back(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, _ = make_project(TEXTS)
    assert admin.overlap_first(project_id) is False
    admin.set_overlap_first(project_id, True)
    assert admin.overlap_first(project_id) is True


def test_a_tab_lists_exactly_the_tasks_its_filter_names(
    make_project: Callable[..., Any], admin: LabelStudioClient
) -> None:
    project_id, ids = make_project(TEXTS)

    def only(task_ids: list[int]) -> dict[str, Any]:
        item = {
            "filter": "filter:tasks:id",
            "operator": "in_list",
            "type": "Number",
            "value": task_ids,
        }
        return {"conjunction": "and", "items": [item]}

    view = admin.upsert_view(project_id, "Escalations", filters=only([ids[4], ids[1]]))
    assert sorted(admin.view_task_ids(project_id, view)) == sorted([ids[1], ids[4]])
    admin.upsert_view(project_id, "Escalations", filters=only([0]))  # how the sync empties a tab
    assert admin.view_task_ids(project_id, view) == []
