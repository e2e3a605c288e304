"""The ``compress`` command: parse options, call services.compression, render the report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown

from tuneforge.cli.registry import register_cli_compression, resolve_cli_model
from tuneforge.cli.render import ProgressRenderer, make_console
from tuneforge.compression.recipe import STEPS
from tuneforge.settings import Settings

console = make_console()


def compress_command(
    model: str = typer.Argument(..., help="Model reference, run directory or adapter directory (merged first)."),
    recipe: Path = typer.Option(..., "--recipe", "-r", help=f"Recipe YAML: steps ({STEPS.listing('and')}), "
                                "eval tasks, calibration data."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write: model/, report.json, report.md."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Compress MODEL as the recipe says, measuring size, latency and quality before and after each step."""
    from tuneforge.compression.report import to_markdown
    from tuneforge.services.compression import compress_model

    resolved = resolve_cli_model(model)  # a registered version: name, name:3, name@alias
    with ProgressRenderer(console) as progress:
        report = compress_model(resolved.path, recipe, output=output, settings=Settings.from_env(), overwrite=overwrite,
                                progress=progress)
    console.print(Markdown(to_markdown(report)))
    console.print(f"[green]done:[/] {output / 'model'} (reports: {output / 'report.md'}, {output / 'report.json'})")
    register_cli_compression(resolved, output, report)  # linked to the version it came from
