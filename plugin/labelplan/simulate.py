"""The simulation: replay labeling on a labeled dataset with a perfect annotator, per strategy.

``simulate(dataset, features, plan, strategies, settings)`` is the core. For each strategy it
labels ``budget`` tasks one pass at a time (the strategy picks, the oracle answers with the true
class), retrains the backend's head every ``refit_every`` labels for strategies that use the
model, and measures at every checkpoint. Weeks are ``week_size`` labels long on a simulated
clock, so the plan's weekly quotas and caps act as they do in production.

The model is the ML backend's (``labelplan_backend``): its features (cached by
:mod:`labelplan.dataset`), its near-duplicate groups (:func:`near_duplicate_groups` over the
perceptual hashes), its calibrated head (:func:`train_head`) and its look-alike search
(:func:`look_alikes`). The project holds the *pool*; a held-out *test* split (whole
near-duplicate groups, stratified by class) measures the classifier each strategy's labels train.

Measures, per checkpoint: items labeled per class; the plan's quota attainment per week;
near-duplicate share (labels spent on a group already labeled); hard-negative share (labels spent
on look-alikes of a must-not-miss class: the items of other classes most similar to it, three per
positive, found by the backend's look-alike search with every label known); distinct source
values per must-not-miss class; and per-class precision, recall and F1 of a logistic regression
(the head's, without its temperature, which does not change the argmax) trained on the labeled
set and tested on the held-out split.

Cold start: an image model has no class names to start from, so, as an admin would in the
backend's ``cold_start.json``, each class gets ``seed_examples`` example items (taken out of the
project) as prototypes. Without them every task scores alike until the first labels, and the
model-guided strategies (labelplan, Uncertainty) start blind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labelplan.dataset import Dataset, Features
from labelplan.ledger import week_of
from labelplan.plan import Plan
from labelplan.strategies import Strategy, View

#: Look-alikes counted as hard negatives per must-not-miss item of the pool.
HARD_NEGATIVES_PER_POSITIVE = 3

#: The simulated clock starts at the plan week that contains this moment.
EPOCH = datetime(2024, 1, 3, 12, 0, tzinfo=UTC)


class SimulationError(ValueError):
    """The simulation cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    """How the replay runs. Defaults are those of ``labelplan simulate``."""

    budget: int
    week_size: int = 100
    refit_every: int = 100
    pass_every: int = 10
    head_size: int = 200
    test_share: float = 0.25
    seed: int = 0
    seed_examples: int = 2
    """Examples per class given to the backend's cold start (as in its ``cold_start.json``);
    taken out of the project, at most a quarter of a class's pool."""
    checkpoint_every: int | None = None
    """Labels between checkpoints; the week size when not set."""

    def checkpoints(self, budget: int) -> list[int]:
        step = self.checkpoint_every or self.week_size
        points = list(range(step, budget + 1, step))
        return points if points and points[-1] == budget else [*points, budget]


# --------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class Split:
    """Dataset rows in the project (pool) and held out for testing."""

    pool: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]


def split_dataset(
    labels: Sequence[str], groups: Sequence[str | None], share: float, seed: int
) -> Split:
    """Hold out about ``share`` of each class, whole near-duplicate groups at a time.

    A group goes to the side of its first item's class, so skin-tone variants of one emoji never
    sit on both sides (that would flatter every classifier). Each class with two or more groups
    keeps at least one in each side.
    """
    if not 0.0 < share < 1.0:
        raise SimulationError(f"the test share must be between 0 and 1; got {share}")
    units: dict[str, list[int]] = {}
    for row, group in enumerate(groups):
        units.setdefault(group or f"row:{row}", []).append(row)
    by_class: dict[str, list[list[int]]] = {}
    for members in units.values():
        by_class.setdefault(labels[members[0]], []).append(members)
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        want = share * sum(len(m) for m in members)
        taken = 0
        for count, index in enumerate(order):
            if taken >= want or (count > 0 and count == len(members) - 1):
                break
            if len(members) < 2:
                break
            test.extend(members[index])
            taken += len(members[index])
    test_rows = np.array(sorted(test), dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(labels), dtype=np.int64), test_rows)
    return Split(pool=pool, test=test_rows)


# --------------------------------------------------------------------------- the model


class Backend:
    """The ML backend's head over cached features: cold start, then retrained on labels."""

    def __init__(
        self,
        classes: tuple[str, ...],
        features: npt.NDArray[np.float32],
        seed: int,
        examples: dict[str, npt.NDArray[np.float32]] | None = None,
    ) -> None:
        from labelplan_backend.head import cold_start_head

        self.classes = classes
        self.features = features
        self.seed = seed
        self.cold = cold_start_head(classes, examples)
        self.version = 0

    def probabilities(self, labeled: Sequence[int], labels: Sequence[str]) -> npt.NDArray[Any]:
        """Class probabilities for every row after training on ``labeled`` rows (none: cold)."""
        from labelplan_backend.head import train_head

        head = self.cold
        if labeled:
            head = train_head(self.cold, self.features[list(labeled)], list(labels), seed=self.seed)
        self.version += 1
        return head.predict_proba(self.features)


def evaluate(
    train_x: npt.NDArray[np.float32],
    train_y: Sequence[str],
    test_x: npt.NDArray[np.float32],
    test_y: Sequence[str],
    classes: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    """Per-class precision, recall and F1 on the test split of a classifier on the labeled set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_fscore_support

    from labelplan_backend.head import C, normalize

    present = sorted(set(train_y))
    if len(present) >= 2:
        model = LogisticRegression(class_weight="balanced", C=C, max_iter=1000, random_state=seed)
        model.fit(normalize(train_x), np.asarray(train_y))
        predicted = model.predict(normalize(test_x))
    else:
        predicted = np.array([present[0] if present else ""] * len(test_y))
    precision, recall, f1, support = precision_recall_fscore_support(
        list(test_y), list(predicted), labels=list(classes), zero_division=0
    )
    per_class = {
        name: {
            "precision": round(float(p), 4),
            "recall": round(float(r), 4),
            "f1": round(float(f), 4),
            "support": int(s),
        }
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    return {"classes": per_class, "macro_f1": round(float(np.mean(f1)), 4)}


# --------------------------------------------------------------------------- the replay


@dataclass
class World:
    """Everything the strategies share: the project (pool), the test split, the oracle's truth."""

    plan: Plan
    settings: Settings
    ids: npt.NDArray[np.int64]
    data: list[dict[str, Any]]
    labels: list[str]
    """True Label Studio label of each pool row (the oracle)."""
    classes: list[str]
    """True plan class of each pool row."""
    label_values: tuple[str, ...]
    features: npt.NDArray[np.float32]
    dup_groups: list[str | None]
    hard_negatives: set[int]
    test_x: npt.NDArray[np.float32]
    test_classes: list[str]
    examples: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    """The admin's example feature rows per label value: the backend's cold-start prototypes."""
    label_map: dict[str, str] = field(default_factory=dict)

    @property
    def rare(self) -> list[str]:
        return self.plan.must_not_miss() or self.plan.rare()


def build_world(dataset: Dataset, features: Features, plan: Plan, settings: Settings) -> World:
    """Split the dataset, group near-duplicates and find hard negatives, as the backend would."""
    from labelplan_backend.duplicates import near_duplicate_groups
    from labelplan_backend.lookalikes import look_alikes

    label_map = plan.label_map()
    unknown = sorted(set(dataset.labels) - set(label_map))
    if unknown:
        raise SimulationError(
            f"the dataset's labels {', '.join(map(repr, unknown))} are not classes or labels of the "
            "plan: add them to a class's `labels` in the plan"
        )
    ids = dataset.ids
    all_groups = near_duplicate_groups(ids.tolist(), features.dup_keys)
    split = split_dataset(
        dataset.labels, [all_groups[int(i)] for i in ids], settings.test_share, settings.seed
    )
    if not len(split.test):
        raise SimulationError(
            "the held-out split is empty: no class has two near-duplicate groups or more; "
            "use a larger dataset or a larger --test-share"
        )
    pool, examples = _take_examples(
        split.pool, dataset.labels, [all_groups[int(i)] for i in ids], settings
    )
    pool_ids = ids[pool]
    pool_keys = [features.dup_keys[r] for r in pool]
    groups = near_duplicate_groups(pool_ids.tolist(), pool_keys)
    labels = [dataset.items[r].label for r in pool]
    label_values = tuple(sorted(set(dataset.labels)))
    pool_x = features.matrix[pool]
    onehot = np.array([[float(v == label) for v in label_values] for label in labels])
    rare_values = {
        v for v in label_values if label_map[v] in set(plan.must_not_miss() or plan.rare())
    }
    most = max((labels.count(v) for v in rare_values), default=0)
    found = look_alikes(
        pool_ids,
        pool_x,
        onehot,
        label_values,
        dict(zip(pool_ids.tolist(), labels, strict=True)),
        per_class=HARD_NEGATIVES_PER_POSITIVE * most,
    )
    row_of = {int(t): row for row, t in enumerate(pool_ids)}
    hard: set[int] = set()
    for value in rare_values:
        quota = HARD_NEGATIVES_PER_POSITIVE * labels.count(value)
        hard.update(row_of[a.task_id] for a in [a for a in found if a.label == value][:quota])
    return World(
        plan=plan,
        settings=settings,
        ids=pool_ids,
        data=[dataset.items[r].data for r in pool],
        labels=labels,
        classes=[label_map[v] for v in labels],
        label_values=label_values,
        features=pool_x,
        dup_groups=[groups[int(t)] for t in pool_ids],
        hard_negatives=hard,
        test_x=features.matrix[split.test],
        test_classes=[label_map[dataset.items[r].label] for r in split.test],
        examples={v: features.matrix[rows] for v, rows in examples.items()},
        label_map=label_map,
    )


def _take_examples(
    pool: npt.NDArray[np.int64],
    labels: Sequence[str],
    groups: Sequence[str | None],
    settings: Settings,
) -> tuple[npt.NDArray[np.int64], dict[str, list[int]]]:
    """Up to ``seed_examples`` rows per class (from distinct near-duplicate groups, at most a
    quarter of the class), out of the pool: what an admin puts in the backend's cold start."""
    rng = np.random.default_rng(settings.seed + 1)
    by_label: dict[str, list[int]] = {}
    for row in pool.tolist():
        by_label.setdefault(labels[row], []).append(row)
    chosen: dict[str, list[int]] = {}
    for label in sorted(by_label):
        rows = by_label[label]
        want = min(settings.seed_examples, len(rows) // 4)
        taken: list[int] = []
        used: set[str] = set()
        for index in rng.permutation(len(rows)).tolist():
            if len(taken) >= want:
                break
            group = groups[rows[index]] or f"row:{rows[index]}"
            if group not in used:
                taken.append(rows[index])
                used.add(group)
        if taken:
            chosen[label] = taken
    out = {r for rows in chosen.values() for r in rows}
    return np.array([r for r in pool.tolist() if r not in out], dtype=np.int64), chosen


class Clock:
    """Simulated time: week ``w`` is ``week_size`` labels spread evenly over seven days."""

    def __init__(self, plan: Plan, week_size: int) -> None:
        self.start = week_of(EPOCH, plan).start
        self.week_size = week_size

    def at(self, label_index: float) -> datetime:
        week, within = divmod(label_index, self.week_size)
        return self.start + timedelta(days=7 * week + 7 * within / self.week_size)


def run_strategy(
    world: World, strategy: Strategy, budget: int, advance: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Replay ``budget`` labels with ``strategy``; the result is one strategy's part of the report."""
    settings, plan = world.settings, world.plan
    n = len(world.ids)
    backend = Backend(world.label_values, world.features, settings.seed, world.examples)
    probs = backend.probabilities([], [])
    view = View(
        ids=world.ids,
        data=world.data,
        classes=world.label_values,
        probs=probs,
        model_version=f"sim.{backend.version}",
        dup_groups=world.dup_groups,
        open=np.ones(n, dtype=bool),
    )
    clock = Clock(plan, settings.week_size)
    checkpoints = settings.checkpoints(budget)
    order: list[int] = []
    served_lanes: list[str | None] = []
    results: list[dict[str, Any]] = []
    while len(order) < budget:
        done = len(order)
        stops = [
            budget,
            _next_multiple(done, settings.pass_every),
            _next_multiple(done, settings.week_size),
        ]
        if strategy.uses_model:
            stops.append(_next_multiple(done, settings.refit_every))
        stops.extend(c for c in checkpoints if c > done)
        view.now = clock.at(done)
        picks = strategy.select(view, min(stops) - done)
        if not picks:
            break
        for pick in picks:
            if not view.open[pick.row]:
                raise SimulationError(f"{strategy.name} served task {world.ids[pick.row]} twice")
            view.open[pick.row] = False
            view.labels[pick.row] = world.labels[pick.row]
            view.labeled_at[pick.row] = clock.at(len(order) + 0.5)
            if pick.lane:
                view.lanes[pick.row] = pick.lane
            order.append(pick.row)
            served_lanes.append(pick.lane)
        if advance:
            advance(len(picks))
        done = len(order)
        if strategy.uses_model and done % settings.refit_every == 0 and done < budget:
            view.probs = backend.probabilities(order, [world.labels[r] for r in order])
            view.model_version = f"sim.{backend.version}"
        if done in checkpoints:
            results.append(checkpoint(world, order))
    return {
        "labels": len(order),
        "checkpoints": results,
        "weeks": weekly_quotas(world, order),
        "curve": rare_curve(world, order),
        "lanes": _lane_counts(served_lanes),
        "order": [int(world.ids[r]) for r in order],
    }


def _next_multiple(done: int, step: int) -> int:
    return (done // step + 1) * step


def _lane_counts(lanes: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lane in lanes:
        if lane:
            counts[lane] = counts.get(lane, 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- measures


def checkpoint(world: World, order: Sequence[int]) -> dict[str, Any]:
    """The measures after labeling ``order`` (rows, in labeling order)."""
    found: dict[str, int] = dict.fromkeys(world.plan.class_names, 0)
    for row in order:
        found[world.classes[row]] += 1
    seen_groups: set[str] = set()
    repeats = 0
    for row in order:
        group = world.dup_groups[row]
        if group is None:
            continue
        repeats += group in seen_groups
        seen_groups.add(group)
    hard = sum(1 for row in order if row in world.hard_negatives)
    keys = list(world.plan.sources.keys)
    sources: dict[str, dict[str, int]] = {}
    for name in world.rare:
        rows = [r for r in order if world.classes[r] == name]
        sources[name] = {key: len({str(world.data[r].get(key)) for r in rows}) for key in keys}
    classifier = evaluate(
        world.features[list(order)],
        [world.classes[r] for r in order],
        world.test_x,
        world.test_classes,
        world.plan.class_names,
        world.settings.seed,
    )
    return {
        "labels": len(order),
        "found": found,
        "rare_found": sum(found[name] for name in world.rare),
        "near_duplicate_share": round(repeats / max(1, len(order)), 4),
        "hard_negative_share": round(hard / max(1, len(order)), 4),
        "distinct_sources": sources,
        "classifier": classifier,
    }


def weekly_quotas(world: World, order: Sequence[int]) -> list[dict[str, Any]]:
    """Per simulated week: each quota class's labeled count against its ``weekly_min``."""
    size = world.settings.week_size
    weeks = []
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        quotas = {}
        for name, spec in world.plan.classes.items():
            if spec.quota <= 0:
                continue
            labeled = sum(1 for r in rows if world.classes[r] == name)
            quotas[name] = {
                "quota": spec.quota,
                "labeled": labeled,
                "attainment": round(min(1.0, labeled / spec.quota), 4),
            }
        attainment = [q["attainment"] for q in quotas.values()]
        weeks.append(
            {
                "week": start // size + 1,
                "labels": len(rows),
                "quotas": quotas,
                "attainment": round(float(np.mean(attainment)), 4) if attainment else 1.0,
                "met": sum(1 for q in quotas.values() if q["labeled"] >= q["quota"]),
            }
        )
    return weeks


def rare_curve(world: World, order: Sequence[int]) -> dict[str, list[int]]:
    """Cumulative items of each must-not-miss class after each label."""
    curves: dict[str, list[int]] = {}
    for name in world.rare:
        hits = np.array([world.classes[r] == name for r in order], dtype=np.int64)
        curves[name] = np.cumsum(hits).tolist()
    return curves


def simulate(
    dataset: Dataset,
    features: Features,
    plan: Plan,
    strategies: Sequence[Strategy],
    settings: Settings,
    advance: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Run every strategy on the same world; the report as plain data (what ``report.json`` holds)."""
    if settings.budget <= 0:
        raise SimulationError(f"the budget must be at least 1 label; got {settings.budget}")
    for name, value in (
        ("week size", settings.week_size),
        ("refit interval", settings.refit_every),
        ("pass interval", settings.pass_every),
    ):
        if value <= 0:
            raise SimulationError(f"the {name} must be at least 1 label; got {value}")
    world = build_world(dataset, features, plan, settings)
    budget = min(settings.budget, len(world.ids))
    pool_counts = {name: world.classes.count(name) for name in plan.class_names}
    test_counts = {name: world.test_classes.count(name) for name in plan.class_names}
    report: dict[str, Any] = {
        "dataset": {
            "path": str(dataset.root),
            "items": len(dataset.items),
            "pool": len(world.ids),
            "test": len(world.test_classes),
            "pool_classes": pool_counts,
            "test_classes": test_counts,
            "cold_start_examples": {v: len(x) for v, x in world.examples.items()},
            "extractor": features.extractor,
            "near_duplicate_groups": len({g for g in world.dup_groups if g}),
            "hard_negatives": len(world.hard_negatives),
        },
        "rare_classes": world.rare,
        "settings": {
            "budget": budget,
            "week_size": settings.week_size,
            "refit_every": settings.refit_every,
            "checkpoint_every": settings.checkpoint_every or settings.week_size,
            "pass_every": settings.pass_every,
            "head_size": settings.head_size,
            "test_share": settings.test_share,
            "seed": settings.seed,
            "seed_examples": settings.seed_examples,
        },
        "strategies": {},
    }
    for strategy in strategies:
        step = (lambda k, s=strategy.name: advance(s, k)) if advance else None
        report["strategies"][strategy.name] = run_strategy(world, strategy, budget, step)
    return report


# --------------------------------------------------------------------------- outputs


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per strategy at the final budget: what the markdown table shows."""
    rows = []
    rare = report["rare_classes"]
    pool = report["dataset"]["pool_classes"]
    for name, run in report["strategies"].items():
        final = run["checkpoints"][-1]
        weeks = run["weeks"]
        row: dict[str, Any] = {"strategy": name, "labels": run["labels"]}
        for cls in rare:
            row[f"{cls} found"] = f"{final['found'][cls]} of {pool[cls]}"
        row["rare found"] = final["rare_found"]
        row["quota attainment"] = (
            round(float(np.mean([w["attainment"] for w in weeks])), 3) if weeks else 0.0
        )
        row["near-dup share"] = final["near_duplicate_share"]
        row["hard-neg share"] = final["hard_negative_share"]
        for cls in rare:
            distinct = final["distinct_sources"][cls]
            row[f"{cls} sources"] = ", ".join(str(v) for v in distinct.values()) or "-"
        for cls in rare:
            row[f"{cls} F1"] = final["classifier"]["classes"][cls]["f1"]
        row["macro F1"] = final["classifier"]["macro_f1"]
        rows.append(row)
    return rows


def markdown_table(report: dict[str, Any]) -> str:
    """The final-budget comparison as a GitHub markdown table."""
    rows = summary_rows(report)
    if not rows:
        return ""
    columns = list(rows[0])
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if c == "strategy" else "---:" for c in columns) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if not math.isnan(value) else "-"
    return str(value)


def write_outputs(report: dict[str, Any], out: Path) -> list[Path]:
    """``report.json``, ``report.md`` and the two plots into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    written.append(path)
    settings = report["settings"]
    dataset = report["dataset"]
    text = (
        f"# Simulation: {', '.join(report['strategies'])}\n\n"
        f"Dataset `{dataset['path']}`: {dataset['pool']} tasks in the project, "
        f"{dataset['test']} held out; features `{dataset['extractor']}`. Budget "
        f"{settings['budget']} labels, weeks of {settings['week_size']} labels, head retrained "
        f"every {settings['refit_every']} labels, seed {settings['seed']}.\n\n"
        + markdown_table(report)
    )
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    written.append(path)
    written.extend(plot(report, out))
    return written


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    """Rare items found vs labels spent, and F1 per class at the final budget (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = report["strategies"]
    rare = report["rare_classes"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, run in strategies.items():
        total = np.sum([run["curve"][cls] for cls in rare], axis=0)
        axis.plot(np.arange(1, len(total) + 1), total, label=name, linewidth=2)
    available = sum(report["dataset"]["pool_classes"][cls] for cls in rare)
    axis.axhline(available, color="grey", linestyle=":", label=f"all {available} in the pool")
    axis.set_xlabel("labels spent")
    axis.set_ylabel(f"rare items found ({', '.join(rare)})")
    axis.set_title("Rare items found vs labels spent")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    found_path = out / "rare_found.png"
    figure.savefig(found_path, dpi=120)
    plt.close(figure)

    classes = list(report["dataset"]["pool_classes"])
    figure, axis = plt.subplots(figsize=(max(7, 0.8 * len(classes)), 4.5))
    width = 0.8 / max(1, len(strategies))
    for i, (name, run) in enumerate(strategies.items()):
        scores = [run["checkpoints"][-1]["classifier"]["classes"][c]["f1"] for c in classes]
        axis.bar(np.arange(len(classes)) + i * width, scores, width, label=name)
    axis.set_xticks(np.arange(len(classes)) + width * (len(strategies) - 1) / 2)
    axis.set_xticklabels(classes, rotation=30, ha="right")
    axis.set_ylabel("F1 on the held-out split")
    axis.set_ylim(0, 1)
    axis.set_title(f"F1 per class after {report['settings']['budget']} labels")
    axis.legend()
    figure.tight_layout()
    f1_path = out / "f1_per_class.png"
    figure.savefig(f1_path, dpi=120)
    plt.close(figure)
    return [found_path, f1_path]
