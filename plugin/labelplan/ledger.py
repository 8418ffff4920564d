"""The ledger: what has been labeled, counted the way the plan's quotas and caps are written.

Quotas and the easy cap are per week, so the ledger first fixes the week that contains "now"
(:func:`week_of`, from the plan's start day and time zone). It then counts, from the labeled
history, the *realized* numbers the planner starts from: items per class this week, easy-class
items this week, items per near-duplicate group (this week and ever), source values per class
this week, which source values were ever seen for a class, and labeling times per class.

Counts here are realized (what annotators actually labeled). The planner adds *expected* counts
for the queue it builds on top (see :mod:`labelplan.schedule`). :meth:`Ledger.record` adds one
annotation in time independent of the number of tasks, which is what makes the planner
incremental.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import median
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from labelplan.plan import Plan
from labelplan.snapshot import Snapshot

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class WeekWindow:
    """A labeling week: ``start <= t < end`` in the plan's time zone, as POSIX seconds too."""

    start: datetime
    end: datetime

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.end.timestamp()

    def contains(self, timestamp: float) -> bool:
        """Whether a POSIX time falls in this week (NaN, an unknown time, never does)."""
        return self.start_ts <= timestamp < self.end_ts

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M %Z} to {self.end:%Y-%m-%d %H:%M %Z}"


def week_of(now: datetime, plan: Plan) -> WeekWindow:
    """The week containing ``now``: from the last start day at local midnight, seven days long.

    A naive ``now`` is taken as UTC. The week is computed in local calendar days, so a week that
    crosses a daylight-saving change is 167 or 169 hours long, as people expect.
    """
    zone = ZoneInfo(plan.week.timezone)
    moment = now if now.tzinfo else now.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    days_back = (local.weekday() - plan.week.start.index) % 7
    first_day = local.date() - timedelta(days=days_back)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=zone)
    last_day = first_day + timedelta(days=7)
    end = datetime(last_day.year, last_day.month, last_day.day, tzinfo=zone)
    return WeekWindow(start=start, end=end)


class Ledger:
    """Realized counters for one week, built from the labeled history and kept up to date.

    Arrays are indexed by class (plan order), near-duplicate group code and source value code,
    as in :class:`~labelplan.snapshot.Snapshot`.
    """

    def __init__(self, snapshot: Snapshot, plan: Plan, week: WeekWindow) -> None:
        k = len(snapshot.classes)
        groups = len(snapshot.dup_names)
        self.week = week
        self.easy_classes = frozenset(snapshot.classes.index(name) for name in plan.easy())
        self.default_lead_time = plan.lead_time.default_seconds
        self.class_week: Counts = np.zeros(k, dtype=np.int64)
        self.easy_week = 0
        self.dup_week: Counts = np.zeros(groups, dtype=np.int64)
        self.dup_overall: Counts = np.zeros(groups, dtype=np.int64)
        self.source_week: list[Counts] = [
            np.zeros((k, len(values)), dtype=np.int64) for values in snapshot.source_values
        ]
        self.seen: list[npt.NDArray[np.bool_]] = [
            np.zeros((k, len(values)), dtype=bool) for values in snapshot.source_values
        ]
        self._lead_times: list[list[float]] = [[] for _ in range(k)]
        self._snapshot = snapshot
        self._count_history()

    def _count_history(self) -> None:
        """Count every labeled task of the snapshot at once: what :meth:`record` would count
        one task at a time, with numpy over (task, class) pairs (at a million tasks, a Python
        step per labeled task cost a quarter of a second)."""
        snapshot, k = self._snapshot, len(self.class_week)
        rows = np.flatnonzero(snapshot.labeled)
        labels = [snapshot.labels.get(row, ()) for row in rows.tolist()]
        at = snapshot.labeled_at[rows]
        this_week = (at >= self.week.start_ts) & (at < self.week.end_ts)  # NaN: never
        groups = snapshot.dup[rows]
        grouped = groups >= 0
        self.dup_overall += np.bincount(groups[grouped], minlength=len(self.dup_overall))
        self.dup_week += np.bincount(groups[grouped & this_week], minlength=len(self.dup_week))
        per_row = np.fromiter(map(len, labels), dtype=np.int64, count=len(labels))
        pair_rows = np.repeat(rows, per_row)
        pair_classes = np.fromiter(
            (c for found in labels for c in found), dtype=np.int64, count=int(per_row.sum())
        )
        pair_week = np.repeat(this_week, per_row)
        easy = np.isin(pair_classes, list(self.easy_classes)) & pair_week
        self.easy_week += int(np.unique(pair_rows[easy]).shape[0])
        self.class_week += np.bincount(pair_classes[pair_week], minlength=k)
        for key in range(snapshot.sources.shape[1]):
            values = snapshot.sources[pair_rows, key]
            known = values >= 0
            width = self.seen[key].shape[1]
            cells = pair_classes * width + values
            self.source_week[key] += np.bincount(
                cells[known & pair_week], minlength=k * width
            ).reshape(k, width)
            self.seen[key].flat[cells[known]] = True
        lead = snapshot.lead_time[pair_rows]
        timed = ~np.isnan(lead)
        for c in range(k):
            self._lead_times[c] = np.sort(lead[timed & (pair_classes == c)]).tolist()

    def record(
        self, row: int, classes: tuple[int, ...], labeled_at: float, lead_time: float
    ) -> list[int]:
        """Count one labeled task; return the classes for which a source value is newly seen.

        Runs in time proportional to the task's labels and source keys, not to the snapshot.
        """
        snapshot = self._snapshot
        group = int(snapshot.dup[row])
        values = snapshot.sources[row].tolist()
        this_week = self.week.contains(labeled_at)
        if group >= 0:
            self.dup_overall[group] += 1
            self.dup_week[group] += this_week
        if this_week:
            self.easy_week += any(c in self.easy_classes for c in classes)
        newly_seen: list[int] = []
        for c in classes:
            if this_week:
                self.class_week[c] += 1
            for key, value in enumerate(values):
                if value < 0:
                    continue
                if this_week:
                    self.source_week[key][c, value] += 1
                if not self.seen[key][c, value]:
                    self.seen[key][c, value] = True
                    newly_seen.append(c)
            if lead_time == lead_time:  # not NaN
                bisect.insort(self._lead_times[c], lead_time)
        return sorted(set(newly_seen))

    def lead_time(self, classes: list[int]) -> float:
        """Median seconds to label an item of these classes (pooled); the plan default if none."""
        pooled = [t for c in classes for t in self._lead_times[c]]
        if not pooled:
            return self.default_lead_time
        if len(classes) == 1:
            times = self._lead_times[classes[0]]
            middle = len(times) // 2
            return times[middle] if len(times) % 2 else (times[middle - 1] + times[middle]) / 2
        return float(median(pooled))

    def lead_time_known(self, c: int) -> int:
        """How many labeled items of class ``c`` have a known lead time."""
        return len(self._lead_times[c])
