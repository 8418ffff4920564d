"""The ``labelplan`` command line.

Each command is one workflow function that wires parts together (in the manner of Prodigy
recipes); nothing clever hides here. Errors that a user can fix exit with code 2 and a message
that says what to do next.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from labelplan import __version__

if TYPE_CHECKING:
    from labelplan.schedule import Summary

app = typer.Typer(
    name="labelplan",
    help="Turn a written sampling plan into the order in which Label Studio serves work.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an actionable error to stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"labelplan {__version__}")
        raise typer.Exit(0)


@app.command()
def taxonomy(
    project: Annotated[int, typer.Option("--project", "-p", help="Label Studio project id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the classes of a project's label config: what a plan's classes can map to.

    Connection settings come from LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY.
    """
    from labelplan.labelstudio import LabelStudioError, connect
    from labelplan.settings import LabelStudioSettings, SettingsError

    try:
        client = connect(LabelStudioSettings.from_env())
        found = client.read_project(project)
    except (SettingsError, LabelStudioError) as exc:
        raise fail(str(exc)) from exc
    if as_json:
        out.print_json(json.dumps(found.taxonomy.to_dict()))
        return
    table = Table(title=f"project {found.id}: {found.title}")
    table.add_column("control")
    table.add_column("type")
    table.add_column("labels")
    for control in found.taxonomy.controls.values():
        table.add_row(control.name, control.tag, ", ".join(control.labels))
    out.print(table)


@app.command()
def validate(
    plan_path: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file (YAML).")],
) -> None:
    """Check a plan file: print `ok`, or every problem with its field path and what is allowed."""
    from labelplan.plan import PlanError, load_plan

    try:
        load_plan(plan_path)
    except PlanError as exc:
        typer.echo(f"{exc.source}: {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("ok")


@app.command()
def schema() -> None:
    """Print the JSON Schema of plan files (for editors and CI)."""
    from labelplan.plan import plan_schema

    typer.echo(json.dumps(plan_schema(), indent=2))


@app.command()
def plan(
    plan_path: Annotated[Path, typer.Option("--plan", help="The plan file (YAML).")],
    tasks: Annotated[
        Path, typer.Option("--tasks", help="The snapshot: one task per line (JSONL).")
    ],
    now: Annotated[
        str | None,
        typer.Option("--now", help="ISO 8601 time the week is counted from; default: the clock."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many entries to plan.")] = 1000,
    output: Annotated[
        str, typer.Option("--format", help="jsonl (one entry per line) or table.")
    ] = "jsonl",
) -> None:
    """Plan the head of the queue offline: entries to stdout, the quota summary to stderr."""
    from labelplan.plan import PlanError, load_plan
    from labelplan.schedule import plan_queue
    from labelplan.snapshot import SnapshotError, read_snapshot

    if output not in ("jsonl", "table"):
        raise fail(f"--format must be jsonl or table; got {escape(output)!r}")
    try:
        moment = _moment(now)
        sampling_plan = load_plan(plan_path)
        snapshot = read_snapshot(tasks, sampling_plan)
    except (PlanError, SnapshotError, ValueError) as exc:
        raise fail(escape(str(exc))) from exc
    queue = plan_queue(snapshot, sampling_plan, moment, limit)
    if output == "jsonl":
        sys.stdout.write("".join(json.dumps(e.to_dict()) + "\n" for e in queue.entries))
        sys.stdout.flush()
    else:
        table = Table(title=f"queue head ({len(queue.entries)} of {limit} requested)")
        for column in ("rank", "id", "lane", "reason"):
            table.add_column(column, overflow="fold")
        for entry in queue.entries:
            table.add_row(str(entry.rank), str(entry.id), entry.lane, escape(entry.reason))
        out.print(table)
    _print_summary(queue.summary)


def _moment(now: str | None) -> datetime:
    """``--now`` as an aware time (naive means UTC); the clock when absent."""
    if now is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(now)
    except ValueError:
        raise ValueError(
            f"--now must be an ISO 8601 time such as 2024-05-08T12:00:00+02:00; got {now!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_summary(summary: Summary) -> None:
    """The week's quota status, shortages and lanes, for the person running the command."""
    table = Table(title=f"week {summary.week}: quota status")
    for column in ("class", "tier", "quota", "labeled", "+ expected in head", "met at rank"):
        table.add_column(column)
    table.add_column("candidates")
    table.add_column("lead time")
    for status in summary.classes:
        met = "-" if status.met_at_rank is None else str(status.met_at_rank)
        table.add_row(
            status.name,
            status.tier,
            str(status.quota),
            str(status.labeled),
            f"{status.expected_in_head:.1f}",
            met,
            f"{status.candidates} (~{status.expected_available:.1f})",
            f"{status.lead_time:.0f} s",
        )
    err.print(table)
    lanes = ", ".join(f"{lane.name} {lane.entries}" for lane in summary.lanes if lane.entries)
    err.print(f"lanes: {escape(lanes)}", highlight=False)
    err.print(
        f"easy items this week: {summary.easy_count} (cap {summary.easy_cap} until "
        "must-not-miss quotas are met)",
        highlight=False,
    )
    for status in summary.shortages:
        err.print(f"[yellow]shortage:[/] {escape(status.shortage or '')}", highlight=False)
    if summary.ended_because:
        err.print(
            f"[yellow]head ended at {summary.length} of {summary.requested}:[/] "
            f"{escape(summary.ended_because)}",
            highlight=False,
        )


@app.command()
def sync(
    plan_path: Annotated[Path, typer.Option("--plan", help="The plan file (YAML).")],
    project: Annotated[int, typer.Option("--project", "-p", help="Label Studio project id.")],
    once: Annotated[bool, typer.Option("--once", help="Run one pass and exit.")] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=1.0, help="Seconds between passes when no webhook arrives."),
    ] = 30.0,
    head_size: Annotated[
        int, typer.Option("--head-size", min=10, help="Queued tasks kept in Label Studio.")
    ] = 200,
    score_per_pass: Annotated[
        int,
        typer.Option(
            "--score-per-pass",
            min=0,
            help="Score at most this many new tasks per pass (0: all); a slow backend then gets a "
            "first queue sooner.",
        ),
    ] = 0,
    metrics_every: Annotated[
        float,
        typer.Option(
            "--metrics-every",
            min=0.0,
            help="Rewrite the metrics block in the description at most this often (seconds), "
            "unless the alarms changed.",
        ),
    ] = 60.0,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend", envvar="LABELPLAN_BACKEND_URL", help="The labelplan ML backend's URL."
        ),
    ] = None,
    webhook_port: Annotated[
        int | None,
        typer.Option("--webhook-port", help="Listen for Label Studio webhooks on this port."),
    ] = None,
    webhook_host: Annotated[
        str, typer.Option("--webhook-host", help="Address to listen on.")
    ] = "127.0.0.1",
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url", help="The URL Label Studio calls (default http://HOST:PORT/webhook)."
        ),
    ] = None,
) -> None:
    """Make Label Studio serve the plan's queue, and keep it right (see docs/sync.md).

    Settings from the environment: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, LABELPLAN_DB,
    LABELPLAN_BACKEND_URL with BASIC_AUTH_USER/BASIC_AUTH_PASS, LABELPLAN_WEBHOOK_SECRET.
    """
    import logging
    import os

    from labelplan.labelstudio import LabelStudioError, connect
    from labelplan.plan import PlanError, load_plan
    from labelplan.settings import LabelStudioSettings, SettingsError
    from labelplan.store import StoreError, open_store
    from labelplan.sync import BackendScorer, PassReport, SyncError, SyncService, SyncSettings
    from labelplan.webhooks import Changes, WebhookReceiver

    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        sampling_plan = load_plan(plan_path)
        client = connect(LabelStudioSettings.from_env())
        store = open_store()
    except PlanError as exc:
        raise fail(escape(f"{exc.source}: " + "; ".join(str(p) for p in exc.problems))) from exc
    except (SettingsError, LabelStudioError, StoreError) as exc:
        raise fail(escape(str(exc))) from exc
    auth = (
        (os.environ["BASIC_AUTH_USER"], os.environ.get("BASIC_AUTH_PASS", ""))
        if os.environ.get("BASIC_AUTH_USER")
        else None
    )
    changes = Changes()
    service = SyncService(
        client,
        store,
        sampling_plan,
        SyncSettings(
            project,
            head_size=head_size,
            metrics_every=metrics_every,
            score_per_pass=score_per_pass,
        ),
        scorer=BackendScorer(backend, auth) if backend else None,
        changes=changes,
    )
    try:
        service.check()
    except (SyncError, LabelStudioError) as exc:
        raise fail(escape(str(exc))) from exc

    def show(report: PassReport) -> None:
        out.print(
            f"pass: pulled {report.pulled}, scored {report.scored}"
            + (f" ({report.awaiting_scores} left)" if report.awaiting_scores else "")
            + f", queue +{report.created} "
            f"~{report.updated} -{report.deleted}, {sum(report.calls.values())} calls "
            f"({report.writes} writes) in {sum(report.seconds.values()):.1f} s"
        )
        for problem in report.problems:
            err.print(f"[yellow]problem:[/] {escape(problem)}")
        for restored in report.restored:
            err.print(f"[yellow]restored:[/] {escape(restored)}")
        if report.review:
            out.print("review: " + ", ".join(f"{k} {v}" for k, v in report.review.items()))
        for alarm in report.alarms:
            err.print(f"[red]alarm:[/] {escape(alarm)}")

    receiver = None
    with store.leader_lock(project) as leader:
        if not leader:
            raise fail(
                f"another labelplan sync is already running for project {project} on this store"
            )
        try:
            if webhook_port is not None and not once:
                secret = os.environ.get("LABELPLAN_WEBHOOK_SECRET", "")
                if not secret:
                    raise fail(
                        "set LABELPLAN_WEBHOOK_SECRET to receive webhooks (any long random string)"
                    )
                receiver = WebhookReceiver(
                    changes, secret=secret, host=webhook_host, port=webhook_port
                ).start()
                service.exposition = receiver.exposition  # GET /metrics (docs/metrics.md)
                target = webhook_url or f"http://{webhook_host}:{receiver.port}/webhook"
                client.register_webhook(project, target, secret=secret)
                out.print(f"listening for webhooks on {webhook_host}:{receiver.port} ({target})")
            with err.status("syncing…"):
                if once:
                    show(service.run_pass())
                else:
                    service.run(interval=interval, on_pass=show)
        except (SyncError, LabelStudioError) as exc:
            raise fail(escape(str(exc))) from exc
        except KeyboardInterrupt:
            out.print("stopped")
        finally:
            if receiver is not None:
                receiver.stop()
            store.close()


@app.command()
def disable(
    project: Annotated[int, typer.Option("--project", "-p", help="Label Studio project id.")],
) -> None:
    """Turn labelplan off for a project: previous sampling back, queue predictions removed."""
    from labelplan.labelstudio import LabelStudioError, connect
    from labelplan.settings import LabelStudioSettings, SettingsError
    from labelplan.store import StoreError, open_store
    from labelplan.sync import disable as disable_project

    try:
        client = connect(LabelStudioSettings.from_env())
        store = open_store()
        outcome = disable_project(client, store, project)
    except (SettingsError, LabelStudioError, StoreError) as exc:
        raise fail(escape(str(exc))) from exc
    out.print(
        f"project {project}: sampling {outcome['sampling']!r}, model version "
        f"{outcome['model_version']!r}, {outcome['deleted_predictions']} queue predictions removed"
    )


@app.command()
def simulate(
    plan_path: Annotated[Path, typer.Option("--plan", help="The plan file (YAML).")],
    dataset_dir: Annotated[
        Path, typer.Option("--dataset", help="A dataset directory with items.jsonl.")
    ],
    budget: Annotated[int, typer.Option("--budget", min=1, help="Labels per strategy.")],
    strategies: Annotated[
        str,
        typer.Option(
            "--strategies", help="Comma-separated: labelplan,sequential,uniform,uncertainty."
        ),
    ] = "labelplan,sequential,uniform,uncertainty",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where report.json, report.md and the plots go.")
    ] = Path("out/simulate"),
    week_size: Annotated[
        int, typer.Option("--week-size", min=1, help="Labels in one simulated week.")
    ] = 100,
    refit_every: Annotated[
        int, typer.Option("--refit-every", min=1, help="Labels between retrainings of the head.")
    ] = 100,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every", min=1, help="Labels between measurements (the classifier too)."
        ),
    ] = 200,
    pass_every: Annotated[
        int, typer.Option("--pass-every", min=1, help="Labels between sync passes (re-plans).")
    ] = 10,
    test_share: Annotated[
        float, typer.Option("--test-share", help="Share of each class held out for testing.")
    ] = 0.25,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and random order.")] = 0,
    seed_examples: Annotated[
        int,
        typer.Option(
            "--seed-examples", min=0, help="Cold-start examples per class given to the backend."
        ),
    ] = 2,
) -> None:
    """Replay labeling on a labeled dataset, per strategy, with a perfect annotator.

    Compares labelplan with Label Studio's Sequential, Uniform and Uncertainty sampling (see
    docs/simulate.md). Needs the backend extras: pip install -e '.[demo]'.
    """
    import importlib.util
    import warnings

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from labelplan.dataset import DatasetError, dataset_features, read_dataset
    from labelplan.plan import PlanError, load_plan
    from labelplan.simulate import Settings, SimulationError, markdown_table, write_outputs
    from labelplan.simulate import simulate as run_simulation
    from labelplan.strategies import STRATEGY_NAMES, make_strategy

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGY_NAMES]
    if unknown or not names:
        raise fail(f"--strategies takes {', '.join(STRATEGY_NAMES)}; got {escape(strategies)!r}")
    missing = [
        m for m in ("sklearn", "matplotlib", "labelplan_backend") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise fail(f"{', '.join(missing)} not installed: run  pip install -e '.[demo]'")
    try:
        sampling_plan = load_plan(plan_path)
        dataset = read_dataset(dataset_dir)
    except PlanError as exc:
        raise fail(escape(f"{exc.source}: " + "; ".join(str(p) for p in exc.problems))) from exc
    except DatasetError as exc:
        raise fail(escape(str(exc))) from exc
    settings = Settings(
        budget=budget,
        week_size=week_size,
        refit_every=refit_every,
        pass_every=pass_every,
        test_share=test_share,
        seed=seed,
        seed_examples=seed_examples,
        checkpoint_every=checkpoint_every,
    )
    chosen = [
        make_strategy(n, sampling_plan, seed=seed, head_size=settings.head_size) for n in names
    ]
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    warnings.filterwarnings("ignore", module="PIL")
    try:
        with Progress(*columns, console=err) as progress:
            extracting = progress.add_task("features", total=len(dataset.items))
            features = dataset_features(dataset, lambda k: progress.advance(extracting, k))
            bars = {n: progress.add_task(n, total=min(budget, len(dataset.items))) for n in names}
            report = run_simulation(
                dataset,
                features,
                sampling_plan,
                chosen,
                settings,
                advance=lambda name, k: progress.advance(bars[name], k),
            )
    except (DatasetError, SimulationError) as exc:
        raise fail(escape(str(exc))) from exc
    written = write_outputs(report, out_dir)
    typer.echo(markdown_table(report))
    for path in written:
        out.print(f"wrote {path}", highlight=False)


@app.command()
def report(
    project: Annotated[int, typer.Option("--project", "-p", help="Label Studio project id.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for report.html, metrics.json, metrics.csv.")
    ] = Path("labelplan-report"),
    plan_path: Annotated[
        Path | None,
        typer.Option("--plan", help="The plan file; default: the plan of the sync's last pass."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="ISO 8601 time to report at; default: the clock.")
    ] = None,
    weeks: Annotated[int, typer.Option("--weeks", min=1, help="Plan weeks to cover.")] = 8,
) -> None:
    """Write the per-class weekly metrics as an HTML report with plots, JSON and CSV.

    Reads the store the sync keeps (LABELPLAN_DB), so it shows the state of the sync's last pass
    and needs no connection to Label Studio (see docs/metrics.md).
    """
    from labelplan.metrics import compute
    from labelplan.plan import Plan, PlanError, load_plan
    from labelplan.report import write_report
    from labelplan.store import StoreError, open_store
    from labelplan.sync import review_facts, switch_states

    try:
        moment = _moment(now)
        store = open_store()
    except (ValueError, StoreError) as exc:
        raise fail(escape(str(exc))) from exc
    try:
        if plan_path is not None:
            sampling_plan = load_plan(plan_path)
        else:
            stored = store.cursor(project, "plan")
            if not stored:
                raise fail(
                    f"no plan is stored for project {project} in {escape(repr(store))}: run "
                    "`labelplan sync` for it first, or pass --plan"
                )
            sampling_plan = Plan.model_validate_json(stored)
        experts = set(json.loads(store.cursor(project, "experts") or "[]"))
        facts = review_facts(store, project, sampling_plan, experts, moment)
        if not facts:
            raise fail(
                f"the store has no tasks of project {project}: run `labelplan sync --project "
                f"{project}` first (LABELPLAN_DB must point at the sync's store)"
            )
        how = json.loads(store.cursor(project, "review_mode") or "{}")
        metrics = compute(
            facts,
            sampling_plan,
            moment,
            states=switch_states(store, project, sampling_plan),
            weeks=weeks,
            review_by=str(how.get("reason", "")),
        )
    except PlanError as exc:
        raise fail(escape(f"{exc.source}: " + "; ".join(str(p) for p in exc.problems))) from exc
    finally:
        store.close()
    written = write_report(
        metrics,
        out_dir,
        f"labelplan report: project {project}",
        disagreement_limit=sampling_plan.review.alarms.disagreement,
    )
    for path in written:
        out.print(str(path))
    for alarm in metrics.alarms:
        err.print(f"[red]alarm:[/] {escape(alarm.message)}", highlight=False)


@app.command()
def demo(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="A dataset folder with items.jsonl.")
    ] = Path("examples/emoji/data"),
    plan_path: Annotated[Path, typer.Option("--plan", help="The plan file (YAML).")] = Path(
        "examples/emoji/plan.yaml"
    ),
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its state.")
    ] = Path(".demo"),
    port: Annotated[int, typer.Option("--port", help="Label Studio's port.")] = 8080,
    simulate_annotators: Annotated[
        bool,
        typer.Option(
            "--simulate-annotators", help="Drive 3 simulated annotators through Label Studio."
        ),
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", help="With --simulate-annotators: stop after this many labels."
        ),
    ] = None,
) -> None:
    """Run the whole thing locally: Label Studio, the ML backend and the sync, on the example dataset."""
    from labelplan.demo import DemoError, annotators, read_items, running_demo, simulate, welcome
    from labelplan.labelstudio import LabelStudioError
    from labelplan.localstudio import LocalStudioError
    from labelplan.plan import PlanError

    try:
        with running_demo(dataset, plan_path, data_dir, port=port, say=out.print) as running:
            out.print(welcome(running))
            if simulate_annotators:
                truth = {str(item.id): item.label for item in read_items(dataset)}
                members = annotators(running, data_dir, 3)
                out.print("simulated annotators at work (one label a second each)…")
                done = simulate(
                    running, members, truth, stop_after=stop_after, pause=1.0, say=out.print
                )
                out.print(f"simulated annotators submitted {done} labels")
                if stop_after is not None:
                    return
            signal_wait()
    except KeyboardInterrupt:
        out.print("stopped everything the demo started")
    except (DemoError, PlanError, LabelStudioError, LocalStudioError) as exc:
        raise fail(escape(str(exc))) from exc


def signal_wait() -> None:
    """Block until Ctrl-C."""
    import threading

    threading.Event().wait()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
