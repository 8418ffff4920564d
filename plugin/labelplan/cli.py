"""The ``labelplan`` command line.

Each command is one workflow function that wires parts together (in the manner of Prodigy
recipes); nothing clever hides here. Errors that a user can fix exit with code 2 and a message
that says what to do next.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from labelplan import __version__

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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
