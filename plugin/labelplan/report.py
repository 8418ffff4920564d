"""Rendering the metrics: the block in the project description, the annotators' quota status,
the HTML report (with hand-drawn SVG plots), JSON, CSV and the Prometheus text format.

Pure functions from :class:`labelplan.metrics.Metrics` to text; writing files is
:func:`write_report`. Plots are plain SVG built here, so the report needs no plotting library
and opens anywhere (see ``docs/decisions/0030-report-plots-as-hand-drawn-svg.md``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from labelplan.metrics import Alarm, ClassWeek, Metrics

_AS_OF = re.compile(r" \(as of [^)]*\)")
"""The block's timestamp, ignored when deciding whether the block changed."""
DESCRIPTION_BEGIN = "--- labelplan metrics (updated by the sync; edit outside these lines) ---"
DESCRIPTION_END = "--- end of labelplan metrics ---"
INSTRUCTIONS_CLASS = "labelplan-quota-status"
_INSTRUCTIONS_BLOCK = re.compile(
    rf'<div class="{INSTRUCTIONS_CLASS}">.*?</div>', flags=re.DOTALL | re.IGNORECASE
)


# --------------------------------------------------------------------------- Label Studio


def _num(value: float | None, pattern: str = "{:.2f}", missing: str = "-") -> str:
    return missing if value is None else pattern.format(value)


def description_block(metrics: Metrics) -> str:
    """The plain-text metrics block for the project description (between the markers)."""
    lines = [DESCRIPTION_BEGIN, f"Week of {metrics.week} (as of {metrics.generated_at})"]
    for row in [r for r in metrics.classes if r.week == metrics.week]:
        quota = f"{row.count}/{row.quota}" if row.quota else f"{row.count}"
        lines.append(
            f"{row.name} [{row.tier}]: {quota}"
            f"{' (quota met)' if row.quota and row.quota_met else ''}; reviewed {row.reviewed}; "
            f"disagreement {_num(row.disagreement, '{:.0%}')}; AC1 {_num(row.ac1)}; "
            f"median {_num(row.lead_time, '{:.0f}')} s"
        )
    tiers = "; ".join(
        f"{t.tier}: {t.normal} normal, {t.tightened} tightened, {t.reduced} reduced"
        for t in metrics.tiers
        if t.normal + t.tightened + t.reduced
    )
    if metrics.review_by:
        lines.append(f"Review by {metrics.review_by}")
    lines.append(f"Review: {tiers or 'no lots judged yet'}")
    lines.append(
        f"Awaiting review: {metrics.awaiting_review}; open escalations: {metrics.escalations_open}"
    )
    if metrics.alarms:
        lines.extend(f"ALARM {alarm.message}" for alarm in metrics.alarms)
    else:
        lines.append("No alarms.")
    lines.append(DESCRIPTION_END)
    return "\n".join(lines)


def merge_description(description: str, metrics: Metrics) -> str:
    """The description with the metrics block replaced (or appended); the admin's text is kept.

    Only the text from the begin marker to the end marker is ours. If the end marker was
    deleted, the block runs to the end of the description (where labelplan puts it). When only
    the block's "as of" time would change, the description is returned as it is, so the sync
    does not rewrite the project for a clock tick.
    """
    block = description_block(metrics)
    start = description.find(DESCRIPTION_BEGIN)
    if start < 0:
        return f"{description.rstrip()}\n\n{block}" if description.strip() else block
    end = description.find(DESCRIPTION_END, start)
    stop = len(description) if end < 0 else end + len(DESCRIPTION_END)
    merged = description[:start] + block + description[stop:]
    return description if _AS_OF.sub("", merged) == _AS_OF.sub("", description) else merged


def quota_status_html(metrics: Metrics) -> str:
    """A short quota status for annotators (HTML that survives Label Studio's sanitizer)."""
    items = []
    for row in [r for r in metrics.classes if r.week == metrics.week and r.quota]:
        mark = "met" if row.quota_met else f"{row.quota - row.count} to go"
        items.append(f"<li>{html.escape(row.name)}: {row.count} of {row.quota} ({mark})</li>")
    body = "".join(items) or "<li>no quotas this week</li>"
    return (
        f'<div class="{INSTRUCTIONS_CLASS}"><p><b>This week ({metrics.week})</b></p>'
        f"<ul>{body}</ul></div>"
    )


def merge_instructions(instructions: str, metrics: Metrics) -> str:
    """The labeling instructions with the quota status replaced (or appended); the rest kept."""
    block = quota_status_html(metrics)
    if _INSTRUCTIONS_BLOCK.search(instructions):
        return _INSTRUCTIONS_BLOCK.sub(lambda _: block, instructions, count=1)
    return f"{instructions}{block}"


# --------------------------------------------------------------------------- Prometheus


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(metrics: Metrics, project_id: int) -> str:
    """The current week's metrics in the Prometheus text exposition format (version 0.0.4)."""
    project = f'project="{project_id}"'
    series: dict[str, tuple[str, list[str]]] = {}

    def add(name: str, help_text: str, labels: str, value: float | None) -> None:
        if value is None:
            return
        series.setdefault(name, (help_text, []))[1].append(f"{name}{{{labels}}} {value:g}")

    for row in [r for r in metrics.classes if r.week == metrics.week]:
        labels = f'{project},class="{_label(row.name)}",tier="{row.tier}"'
        add("labelplan_class_items", "Items labeled this week per class.", labels, row.count)
        add("labelplan_class_quota", "Weekly quota per class.", labels, row.quota)
        add(
            "labelplan_class_reviewed",
            "Items with a second annotation this week.",
            labels,
            row.reviewed,
        )
        add(
            "labelplan_class_disagreement_ratio",
            "Share of reviewed items annotators disagree on.",
            labels,
            row.disagreement,
        )
        add("labelplan_class_ac1", "Gwet's AC1 agreement this week.", labels, row.ac1)
        add(
            "labelplan_class_error_ratio",
            "Inverse-probability-weighted error rate this week.",
            labels,
            row.error_rate,
        )
        add(
            "labelplan_class_lead_time_seconds",
            "Median seconds to label an item.",
            labels,
            row.lead_time,
        )
        add(
            "labelplan_class_skip_ratio",
            "Share of skips among attempts this week.",
            labels,
            row.skip_rate,
        )
    for tier in metrics.tiers:
        for state in ("normal", "tightened", "reduced"):
            labels = f'{project},tier="{tier.tier}",state="{state}"'
            add(
                "labelplan_review_annotators",
                "Annotators per tier and review state.",
                labels,
                getattr(tier, state),
            )
    add(
        "labelplan_review_awaiting",
        "Sampled tasks waiting for a second annotation.",
        project,
        metrics.awaiting_review,
    )
    add(
        "labelplan_escalations_open",
        "Escalations not yet settled.",
        project,
        metrics.escalations_open,
    )
    kinds = ("zero_items", "quota_missed", "disagreement", "escalation_waiting")
    for kind in kinds:
        count = sum(alarm.kind == kind for alarm in metrics.alarms)
        add("labelplan_alarms", "Active alarms by kind.", f'{project},kind="{kind}"', count)
    lines = []
    for name, (help_text, samples) in series.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- JSON and CSV


def metrics_json(metrics: Metrics) -> str:
    return json.dumps(metrics.to_dict(), indent=2, sort_keys=True)


def metrics_csv(metrics: Metrics) -> str:
    """One row per class and week, the columns of :class:`ClassWeek`."""
    buffer = io.StringIO()
    names = [f.name for f in fields(ClassWeek)]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in metrics.classes:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return buffer.getvalue()


# --------------------------------------------------------------------------- HTML

_W, _H, _PAD = 260, 120, 28
_INK, _MUTED, _BAR, _WARN, _OK = "#1f2937", "#9ca3af", "#3b82f6", "#dc2626", "#16a34a"


def _axes(weeks: Sequence[str], top: float, fmt: Callable[[float], str]) -> list[str]:
    parts = [
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 6}" y2="{_H - _PAD}" stroke="{_MUTED}"/>',
        f'<text x="{_PAD - 4}" y="{_PAD - 4}" text-anchor="end" font-size="9" fill="{_MUTED}">{fmt(top)}</text>',
        f'<text x="{_PAD - 4}" y="{_H - _PAD}" text-anchor="end" font-size="9" fill="{_MUTED}">{fmt(0)}</text>',
    ]
    step = (_W - _PAD - 6) / max(1, len(weeks))
    for i, week in enumerate(weeks):
        if i % 2 == len(weeks) % 2 or len(weeks) <= 4:
            x = _PAD + step * (i + 0.5)
            parts.append(
                f'<text x="{x:.1f}" y="{_H - _PAD + 12}" text-anchor="middle" font-size="9" fill="{_MUTED}">{week[5:]}</text>'
            )
    return parts


def _y(value: float, top: float) -> float:
    span = _H - 2 * _PAD
    return _H - _PAD - (value / top if top else 0.0) * span


def _svg(title: str, parts: list[str]) -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{html.escape(title)}">{"".join(parts)}</svg></figure>'
    )


def bar_chart(
    title: str, weeks: Sequence[str], values: Sequence[float], target: float | None = None
) -> str:
    """Weekly bars, with a dashed target line (the quota) when given."""
    top = max([*values, target or 0.0, 1.0]) * 1.1
    parts = _axes(weeks, top, lambda v: f"{v:.0f}")
    step = (_W - _PAD - 6) / max(1, len(weeks))
    for i, value in enumerate(values):
        x = _PAD + step * i + step * 0.15
        y = _y(value, top)
        color = _BAR if target is None or value >= target else _WARN
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{_H - _PAD - y:.1f}" fill="{color}">'
            f"<title>{weeks[i]}: {value:g}</title></rect>"
        )
    if target:
        y = _y(target, top)
        parts.append(
            f'<line x1="{_PAD}" y1="{y:.1f}" x2="{_W - 6}" y2="{y:.1f}" stroke="{_INK}" stroke-dasharray="4 3"/>'
            f'<text x="{_W - 6}" y="{y - 3:.1f}" text-anchor="end" font-size="9" fill="{_INK}">quota {target:g}</text>'
        )
    return _svg(title, parts)


def line_chart(
    title: str,
    weeks: Sequence[str],
    values: Sequence[float | None],
    *,
    top: float | None = None,
    fmt: Callable[[float], str] = lambda v: f"{v:.0f}",
    limit: float | None = None,
) -> str:
    """Weekly points joined by lines (gaps where a week has no value), with an optional limit."""
    present = [v for v in values if v is not None]
    top = top or max([*present, limit or 0.0, 1e-9]) * 1.15
    parts = _axes(weeks, top, fmt)
    step = (_W - _PAD - 6) / max(1, len(weeks))
    points = [
        (_PAD + step * (i + 0.5), _y(v, top), v) for i, v in enumerate(values) if v is not None
    ]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_BAR}" stroke-width="2"/>')
    for x, y, v in points:
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_BAR}"><title>{fmt(v)}</title></circle>'
        )
    if limit is not None:
        y = _y(limit, top)
        parts.append(
            f'<line x1="{_PAD}" y1="{y:.1f}" x2="{_W - 6}" y2="{y:.1f}" stroke="{_WARN}" stroke-dasharray="4 3"/>'
        )
    if not points:
        parts.append(
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" font-size="11" fill="{_MUTED}">no data yet</text>'
        )
    return _svg(title, parts)


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;color:#1f2937;margin:24px;max-width:1200px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.muted{color:#6b7280} table{border-collapse:collapse;margin:8px 0}
td,th{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:right}
td:first-child,th:first-child{text-align:left}
.alarm{color:#b91c1c} .ok{color:#15803d}
.class{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin-bottom:12px}
.class h3{width:100%;font-size:15px;margin:12px 0 0}
figure{margin:0} figcaption{font-size:12px;color:#374151}
"""


def _alarm_rows(alarms: Sequence[Alarm]) -> str:
    if not alarms:
        return '<p class="ok">No alarms.</p>'
    rows = "".join(
        f"<tr><td>{html.escape(a.kind)}</td><td>{html.escape(a.subject)}</td><td>{a.week}</td>"
        f'<td class="alarm" style="text-align:left">{html.escape(a.message)}</td></tr>'
        for a in alarms
    )
    return f"<table><tr><th>kind</th><th>subject</th><th>week</th><th>what</th></tr>{rows}</table>"


def _current_table(rows: Sequence[ClassWeek]) -> str:
    head = (
        "<tr><th>class</th><th>tier</th><th>items / quota</th><th>reviewed</th>"
        "<th>disagreement</th><th>AC1 (95 % CI)</th><th>error rate (IPW)</th>"
        "<th>median time</th><th>skip rate</th></tr>"
    )
    body = []
    for r in rows:
        ci = f" ({_num(r.ac1_low)} to {_num(r.ac1_high)})" if r.ac1_low is not None else ""
        err = _num(r.error_rate, "{:.1%}")
        if r.error_stderr is not None:
            err += f" ± {1.96 * r.error_stderr:.1%}"
        quota_class = "ok" if r.quota_met else "alarm"
        quota = f"{r.count} / {r.quota}" if r.quota else f"{r.count}"
        body.append(
            f"<tr><td>{html.escape(r.name)}</td><td>{r.tier}</td>"
            f'<td class="{quota_class if r.quota else ""}">{quota}</td><td>{r.reviewed}</td>'
            f"<td>{_num(r.disagreement, '{:.0%}')}</td><td>{_num(r.ac1)}{ci}</td><td>{err}</td>"
            f"<td>{_num(r.lead_time, '{:.0f} s')}</td><td>{_num(r.skip_rate, '{:.0%}')}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def render_html(metrics: Metrics, title: str, *, disagreement_limit: float | None = None) -> str:
    """The report page: alarms, this week's table, review states and per-class weekly plots."""
    weeks = metrics.weeks
    current = [r for r in metrics.classes if r.week == metrics.week]
    tiers = "".join(
        f"<tr><td>{t.tier}</td><td>{t.normal}</td><td>{t.tightened}</td><td>{t.reduced}</td></tr>"
        for t in metrics.tiers
    )
    totals = metrics.totals
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">Generated {metrics.generated_at}; plan weeks {weeks[0]} to {weeks[-1]}. '
        f"Awaiting review: {metrics.awaiting_review}; open escalations: {metrics.escalations_open}.</p>",
        "<h2>Alarms</h2>",
        _alarm_rows(metrics.alarms),
        f"<h2>Week of {metrics.week}</h2>",
        _current_table(current),
        "<h2>Review state per tier (annotators)</h2>",
        f"<p>Review by {html.escape(metrics.review_by)}.</p>" if metrics.review_by else "",
        f"<table><tr><th>tier</th><th>normal</th><th>tightened</th><th>reduced</th></tr>{tiers}</table>",
        "<h2>All classes</h2>",
        '<div class="class">',
        bar_chart("items per week", weeks, [t.count for t in totals]),
        line_chart("median time-to-label, all items (s)", weeks, [t.lead_time for t in totals]),
        line_chart(
            "median time-to-label, rare items (s)", weeks, [t.lead_time_rare for t in totals]
        ),
        line_chart(
            "skip rate", weeks, [t.skip_rate for t in totals], top=1.0, fmt=lambda v: f"{v:.0%}"
        ),
        "</div>",
        "<h2>Per class</h2>",
    ]
    for name in [r.name for r in current]:
        rows = [r for r in metrics.classes if r.name == name]
        reviewed_share = [r.reviewed / r.count if r.count else None for r in rows]
        sections += [
            f'<div class="class"><h3>{html.escape(name)} <span class="muted">({rows[-1].tier})</span></h3>',
            bar_chart("items vs quota", weeks, [r.count for r in rows], rows[-1].quota or None),
            line_chart("reviewed share", weeks, reviewed_share, top=1.0, fmt=lambda v: f"{v:.0%}"),
            line_chart(
                "disagreement",
                weeks,
                [r.disagreement for r in rows],
                top=1.0,
                fmt=lambda v: f"{v:.0%}",
                limit=disagreement_limit,
            ),
            line_chart("median time-to-label (s)", weeks, [r.lead_time for r in rows]),
            "</div>",
        ]
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_report(
    metrics: Metrics, out_dir: Path, title: str, *, disagreement_limit: float | None = None
) -> list[Path]:
    """Write ``report.html``, ``metrics.json`` and ``metrics.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "report.html": render_html(metrics, title, disagreement_limit=disagreement_limit),
        "metrics.json": metrics_json(metrics),
        "metrics.csv": metrics_csv(metrics),
    }
    written = []
    for name, text in files.items():
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
