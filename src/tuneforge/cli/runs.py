"""``tuneforge runs list | show | diff``: the run folders and their provenance, read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from tuneforge.cli.render import make_console

console = make_console()
runs_app = typer.Typer(help="List run folders, show one, diff two (config and provenance).", no_args_is_help=True)


@runs_app.command("list")
def list_command(folder: Path = typer.Argument(Path("runs"), help="Folder holding run folders (default: runs).")) -> None:
    """A table of the runs in FOLDER: name, date, model, method, steps, losses, status."""
    from tuneforge.services.runs import list_runs

    rows = list_runs(folder)
    table = Table(title=f"runs in {folder}")
    for column in ("run", "created", "model", "method", "steps", "final loss", "eval loss", "status"):
        table.add_column(column)
    for row in rows:
        name = str(row.path.relative_to(folder)) if row.path != folder else str(row.path)
        table.add_row(name, (row.created_at or "")[:19].replace("T", " "), row.model or "", row.method or "",
                      _text(row.steps), _text(row.final_loss), _text(row.eval_loss), row.status or "")
    console.print(table)
    if not rows:
        console.print(f"no tuneforge runs in {folder}")


@runs_app.command("show")
def show_command(
    run_dir: Path = typer.Argument(..., help="A run folder (a training config's output_dir)."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON."),
) -> None:
    """A run's status, summary figures and provenance (versions, data sha256, git commit, command, machine)."""
    from tuneforge.services.runs import flatten, show_run

    shown = show_run(run_dir)
    if as_json:
        console.print_json(json.dumps(shown))
        return
    for section in ("marker", "summary", "provenance"):
        if not shown[section]:
            continue
        table = Table(title=f"{section} ({run_dir})", show_header=False)
        for key, value in flatten(shown[section]).items():
            table.add_row(key, _text(value))
        console.print(table)
    if shown["summary"] is None and shown["last_metrics"]:
        console.print(f"last metrics: {json.dumps(shown['last_metrics'])}", highlight=False, markup=False)


@runs_app.command("diff")
def diff_command(
    run_a: Path = typer.Argument(..., help="The first run folder."),
    run_b: Path = typer.Argument(..., help="The second run folder."),
) -> None:
    """What differs between two runs: config, provenance (versions, data, commit, machine) and figures."""
    from tuneforge.services.runs import diff_runs

    differences = diff_runs(run_a, run_b)
    table = Table(title=f"{run_a} vs {run_b}")
    for column in ("section", "key", str(run_a), str(run_b)):
        table.add_column(column, overflow="fold")
    for d in differences:
        table.add_row(d.section, d.key, _text(d.a), _text(d.b))
    console.print(table)
    if not differences:
        console.print("the two runs have the same config and provenance")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
