"""Queue ranks written as scores: always the desired order, with the fewest writes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelplan.ranks import HIGH, LOW, RankError, longest_increasing, reconcile


def apply(
    current: dict[int, float], desired: list[int], keep: frozenset[int] = frozenset()
) -> dict[int, float]:
    moves = reconcile(desired, current, keep=keep)
    after = {t: s for t, s in current.items() if t not in moves.delete}
    after.update(moves.create)
    after.update(moves.update)
    return after


def served_order(scores: dict[int, float], tasks: list[int]) -> list[int]:
    return sorted(tasks, key=lambda t: scores[t])


@st.composite
def situations(draw: st.DrawFn) -> tuple[dict[int, float], list[int]]:
    universe = draw(st.lists(st.integers(1, 400), min_size=0, max_size=80, unique=True))
    written = draw(st.lists(st.sampled_from(universe), unique=True)) if universe else []
    scores = draw(
        st.lists(
            st.floats(LOW, HIGH, exclude_min=True, exclude_max=True),
            min_size=len(written),
            max_size=len(written),
            unique=True,
        )
    )
    desired = draw(st.permutations(universe)) if universe else []
    cut = draw(st.integers(0, len(desired)))
    return dict(zip(written, scores, strict=True)), list(desired[:cut])


@settings(max_examples=300, deadline=None)
@given(situations())
def test_scores_always_sort_into_the_desired_order(
    situation: tuple[dict[int, float], list[int]],
) -> None:
    current, desired = situation
    after = apply(current, desired)
    assert served_order(after, desired) == desired
    assert all(LOW <= after[t] <= HIGH for t in desired)
    # every written task that is not desired is deleted
    assert set(after) == set(desired)


@settings(max_examples=300, deadline=None)
@given(situations())
def test_only_tasks_out_of_order_are_rewritten(
    situation: tuple[dict[int, float], list[int]],
) -> None:
    current, desired = situation
    moves = reconcile(desired, current)
    written = [t for t in desired if t in current]
    in_order = len(longest_increasing([current[t] for t in written]))
    if not moves.renumbered:
        assert len(moves.update) == len(written) - in_order
    assert set(moves.create) == {t for t in desired if t not in current}


def test_moving_one_task_costs_one_write() -> None:
    desired = list(range(1, 101))
    current = dict(zip(desired, [i / 200 for i in range(1, 101)], strict=True))
    moved = [*desired[:10], desired[60], *desired[10:60], *desired[61:]]
    moves = reconcile(moved, current)
    assert (len(moves.create), len(moves.update), len(moves.delete)) == (0, 1, 0)


def test_topping_up_the_tail_leaves_written_tasks_alone() -> None:
    current: dict[int, float] = {}
    next_id = 1
    for _ in range(15):  # fifteen top-ups of 50 tasks after the previous ones
        desired = sorted(current) + list(range(next_id, next_id + 50))
        moves = reconcile(desired, current)
        assert not moves.update and not moves.renumbered
        current.update(moves.create)
        next_id += 50
    assert served_order(current, sorted(current)) == sorted(current)


def test_a_long_labeling_run_costs_few_rewrites_per_label() -> None:
    """Head of 100; each round 50 get labeled (kept, never rewritten) and 50 join the tail."""
    active: dict[int, float] = {}
    next_id, labeled, rewrites = 1, 0, 0
    for _ in range(200):
        desired = (
            sorted(active)[50:] + list(range(next_id, next_id + 50))
            if active
            else list(range(1, 101))
        )
        next_id = max(desired) + 1
        labeled += len(active) - len(set(active) & set(desired))
        moves = reconcile(desired, {t: active[t] for t in desired if t in active})
        rewrites += len(moves.update)
        active = {t: active.get(t, 0.0) for t in desired}
        active.update(moves.create)
        active.update(moves.update)
        assert served_order(active, desired) == desired
    assert labeled >= 9_900
    assert rewrites / labeled < 0.1


def test_labeled_tasks_kept_are_not_deleted() -> None:
    current = {1: 0.1, 2: 0.2, 3: 0.3}
    moves = reconcile([3], current, keep=frozenset({1}))
    assert moves.delete == [2]


def test_a_task_twice_is_refused() -> None:
    with pytest.raises(RankError, match="task 4 appears twice"):
        reconcile([4, 5, 4], {})


def test_when_gaps_run_out_everything_is_respaced() -> None:
    current = {1: 0.5, 2: 0.5 + 1e-12}
    moves = reconcile([1, 3, 2], current)
    assert moves.renumbered
    after = {**current, **moves.create, **moves.update}
    assert served_order(after, [1, 2, 3]) == [1, 3, 2]
