"""A street-scene project with a rare class, its ground truth, and a simulated backend's scores.

2,000 tasks: 50 bicycles (2.5 %), 550 persons, 1,400 cars. Cars come in bursts of four frames
from one scene (near-duplicates); 60 cars look like bicycles to the model (hard negatives). The
"backend" here is a seeded noisy scorer that writes what the real one writes into the store
(per-class probabilities, a near-duplicate group) — Label Studio itself is real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labelplan.labelstudio import Project
from labelplan.plan import Plan, parse_plan
from labelplan.store import ScoreRow, Store, TaskRow

CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Choices name="label" toName="text" choice="single">
    <Choice value="Bicycle"/><Choice value="Car"/><Choice value="Person"/>
  </Choices>
</View>
"""

PLAN = """
version: 1
seed: 3
preannotations: false
week: {start: monday, timezone: UTC}
classes:
  bicycle: {tier: must_not_miss, labels: [Bicycle], weekly_min: 30, hard_negative_share: 0.05}
  car: {tier: nice_to_have, easy: true, labels: [Car]}
  person: {tier: nice_to_have, easy: true, labels: [Person]}
easy_cap: {per_week: 30}
near_duplicates: {per_week: 2, overall: 4}
sources: {keys: [camera], max_share: 0.6}
discovery_reserve: 0.10
control_share: 0.02
"""

LABEL = {"bicycle": "Bicycle", "car": "Car", "person": "Person"}


@dataclass(frozen=True)
class Scenario:
    data: list[dict[str, str]]
    truth: list[str]
    """The true class of each task, in import order."""
    groups: list[str | None]
    probs: list[dict[str, float]]

    def plan(self) -> Plan:
        return parse_plan(PLAN)


def street_scenes(n: int = 2000, rare: int = 50, lookalikes: int = 60, seed: int = 11) -> Scenario:
    rng = np.random.default_rng(seed)
    truth = ["bicycle"] * rare + ["person"] * (n * 55 // 200) + []
    truth += ["car"] * (n - len(truth))
    order = rng.permutation(n)
    truth = [truth[i] for i in order]
    data, groups, probs = [], [], []
    car_seen = 0
    lookalike_left = lookalikes
    for i, cls in enumerate(truth):
        camera = f"cam-{rng.integers(0, 4)}"
        data.append({"text": f"frame {i} from {camera}", "camera": camera})
        if cls == "car":
            groups.append(f"scene-{car_seen // 4}")
            car_seen += 1
        else:
            groups.append(None)
        if cls == "bicycle":
            p_bike = float(rng.uniform(0.55, 0.95))
        elif cls == "car" and lookalike_left > 0 and rng.random() < 0.1:
            p_bike = float(rng.uniform(0.18, 0.45))
            lookalike_left -= 1
        else:
            p_bike = float(rng.uniform(0.0, 0.08))
        rest = 1.0 - p_bike
        p_true = rest * float(rng.uniform(0.7, 0.95)) if cls != "bicycle" else 0.0
        other = "person" if cls == "car" else "car"
        p = {"bicycle": p_bike}
        if cls == "bicycle":
            split = float(rng.uniform(0.3, 0.7))
            p.update(car=rest * split, person=rest * (1 - split))
        else:
            p.update({cls: p_true, other: rest - p_true})
        probs.append({LABEL[k]: round(v, 6) for k, v in p.items()})
    return Scenario(data, truth, groups, probs)


@dataclass
class SimulatedBackend:
    """Writes the scenario's scores into the store, as the real backend does on ``/predict``."""

    store: Store
    project_id: int
    scenario: Scenario
    task_ids: list[int]
    broken: frozenset[int] = frozenset()
    """Task ids the backend fails on (bad data): they get no scores."""

    def score(self, project: Project, tasks: list[TaskRow]) -> list[str]:
        index = {t: i for i, t in enumerate(self.task_ids)}
        rows = [
            ScoreRow(
                t.task_id,
                "sim-1",
                self.scenario.probs[index[t.task_id]],
                self.scenario.groups[index[t.task_id]],
            )
            for t in tasks
            if t.task_id in index and t.task_id not in self.broken
        ]
        self.store.put_scores(self.project_id, rows)
        return [
            f"task {t}: could not read its data"
            for t in sorted(self.broken)
            if t in {x.task_id for x in tasks}
        ]
