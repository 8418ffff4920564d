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
        SyncSettings(project, head_size=head_size),
        scorer=BackendScorer(backend, auth) if backend else None,
        changes=changes,
    )
    try:
        service.check()
    except (SyncError, LabelStudioError) as exc:
        raise fail(escape(str(exc))) from exc

    def show(report: PassReport) -> None:
        out.print(
            f"pass: pulled {report.pulled}, scored {report.scored}, queue +{report.created} "
            f"~{report.updated} -{report.deleted}, {sum(report.calls.values())} calls "
            f"({report.writes} writes) in {sum(report.seconds.values()):.1f} s"
        )
        for problem in report.problems:
            err.print(f"[yellow]problem:[/] {escape(problem)}")
        for restored in report.restored:
            err.print(f"[yellow]restored:[/] {escape(restored)}")

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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
