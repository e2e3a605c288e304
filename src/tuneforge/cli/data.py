"""``tuneforge data``: versioned datasets (import, versions, show, diff, export, split, report, clean, append,
pairs, collect)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from tuneforge.cli.render import make_console

data_app = typer.Typer(help="Versioned datasets: import, inspect, clean, split, report.", no_args_is_help=True)
console = make_console()

PROJECT = typer.Option("default", "--project", envvar="TUNEFORGE_PROJECT",
                       help="Project the data sets belong to (default: TUNEFORGE_PROJECT, else 'default').")
MODEL = typer.Option(None, "--model", help="Count tokens with this model's tokenizer (default: ~4 characters/token).")
THRESHOLD = typer.Option(0.8, "--threshold", help="Jaccard similarity from which records are near duplicates.")
AS_JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")


@contextmanager
def _platform() -> Iterator[Any]:
    from tuneforge.services.platform import open_platform
    from tuneforge.settings import Settings

    platform = open_platform(Settings.from_env())
    try:
        yield platform
    finally:
        platform.close()


def _done(outcome: Any, what: str) -> None:
    version = outcome.version
    if outcome.created:
        console.print(f"[green]{what}[/] {version.ref}: {version.records} records ({version.format}), "
                      f"sha256 {version.sha256[:12]}")
    else:
        reason = outcome.note.get("reason", "the same content")
        console.print(f"[yellow]unchanged[/]: {version.ref} already holds it ({reason})")


@data_app.command("import")
def import_command(file: Path = typer.Argument(..., help=".jsonl/.json/.csv/.parquet file or saved datasets folder."),
                   name: str = typer.Option(..., "--name", "-n", help="Data set name."), project: str = PROJECT) -> None:
    """Import a file as a new version of data set NAME."""
    from tuneforge.services.datasets import import_data

    with _platform() as platform:
        _done(import_data(platform, file, project=project, name=name), "imported")


@data_app.command("pairs")
def pairs_command(file: Path = typer.Argument(..., help="Comparisons {prompt, answers: [A, B], choice} or ratings "
                                            "{prompt, response, rating}."),
                  name: str = typer.Option(..., "--name", "-n", help="Data set name."), project: str = PROJECT) -> None:
    """Turn human choices between answers into a preference (DPO) version of data set NAME."""
    from tuneforge.services.datasets import pairs_data

    with _platform() as platform:
        outcome = pairs_data(platform, file, project=project, name=name)
    if outcome.created:
        console.print(", ".join(f"{n} {what.replace('_', ' ')}" for what, n in outcome.version.details.items()))
    _done(outcome, "pairs")


@data_app.command("append")
def append_command(name: str = typer.Argument(..., help="Data set name."),
                   file: Path = typer.Argument(..., help="Records to add."), project: str = PROJECT) -> None:
    """Make version V+1 = the newest version V + the new records of FILE (duplicates of V skipped)."""
    from tuneforge.services.datasets import append_data

    with _platform() as platform:
        outcome = append_data(platform, name, file, project=project)
    details = outcome.version.details if outcome.created else outcome.note
    console.print(f"added {details['added']} records, skipped {details['skipped_duplicates']} duplicates")
    _done(outcome, "appended")


@data_app.command("versions")
def versions_command(name: Optional[str] = typer.Argument(None, help="Data set (none: list the data sets)."),
                     project: str = PROJECT, as_json: bool = AS_JSON) -> None:
    """List the versions of a data set, or the data sets of the project."""
    from tuneforge.services.datasets import list_data_sets, list_data_versions, version_view

    with _platform() as platform:
        if name is None:
            names = [d.name for d in list_data_sets(platform, project=project)]
            console.print("\n".join(names) if names else "no data sets yet: tuneforge data import FILE --name NAME")
            return
        versions = list_data_versions(platform, name, project=project)
    if as_json:
        console.print_json(json.dumps([version_view(v) for v in versions]))
        return
    table = Table(title=f"data set {name}")
    for column in ("version", "records", "format", "operation", "parent", "tokens", "sha256"):
        table.add_column(column)
    refs = {v.id: v.ref for v in versions}
    for v in versions:
        parent = refs.get(v.parent_id, v.parent_id or "")
        table.add_row(str(v.version), str(v.records), v.format, v.operation, parent, str(v.stats.get("tokens", "")),
                      v.sha256[:12])
    console.print(table)


@data_app.command("show")
def show_command(ref: str = typer.Argument(..., help="NAME:V, NAME@latest or NAME."),
                 head: int = typer.Option(5, "--head", help="Records to print."), project: str = PROJECT) -> None:
    """Show a version: its lineage, details and first records."""
    from tuneforge.services.datasets import show_data

    with _platform() as platform:
        shown = show_data(platform, ref, project=project, head=head)
    version = shown["version"]
    console.print(f"[bold]{version['ref']}[/] {version['records']} records ({version['format']}), "
                  f"sha256 {version['sha256']}")
    console.print("lineage: " + " <- ".join(f"{v['ref']} ({v['operation']})" for v in shown["lineage"]))
    if version["details"]:
        console.print(f"details: {escape(json.dumps(_short(version['details'])))}")
    for record in shown["head"]:
        console.print(json.dumps(record, ensure_ascii=False), markup=False, highlight=False)


def _short(details: dict[str, Any]) -> dict[str, Any]:
    """Details with long lists cut to their length (the JSON of the API has them all)."""
    return {k: (f"[{len(v)} items]" if isinstance(v, list) and len(v) > 10 else
                _short(v) if isinstance(v, dict) else v) for k, v in details.items()}


@data_app.command("diff")
def diff_command(a: str = typer.Argument(..., help="Older version (NAME:V)."),
                 b: str = typer.Argument(..., help="Newer version (NAME:V)."), project: str = PROJECT,
                 as_json: bool = AS_JSON) -> None:
    """Records added, removed and changed from A to B."""
    from tuneforge.services.datasets import diff_data

    with _platform() as platform:
        diff = diff_data(platform, a, b, project=project)
    if as_json:
        console.print_json(json.dumps(diff))
        return
    console.print(f"{diff['a']} -> {diff['b']}: {len(diff['added'])} added, {len(diff['removed'])} removed, "
                  f"{len(diff['changed'])} changed, {diff['unchanged']} unchanged")


@data_app.command("export")
def export_command(ref: str = typer.Argument(..., help="NAME:V."), output: Path = typer.Option(..., "--output", "-o",
                   help=".jsonl or .json file."), project: str = PROJECT) -> None:
    """Write a version's records to a file."""
    from tuneforge.services.datasets import export_data

    with _platform() as platform:
        console.print(f"[green]wrote[/] {export_data(platform, ref, output, project=project)}")


@data_app.command("split")
def split_command(ref: str = typer.Argument(..., help="NAME:V."),
                  test: float = typer.Option(0.1, "--test", help="Fraction for the test side."),
                  seed: int = typer.Option(42, "--seed"), train_name: Optional[str] = typer.Option(None),
                  test_name: Optional[str] = typer.Option(None), project: str = PROJECT) -> None:
    """Split a version into NAME-train and NAME-test versions (no record in both)."""
    from tuneforge.services.datasets import SplitOptions, split_data

    from tuneforge.config import validate_config

    options = validate_config({"test": test, "seed": seed, "train_name": train_name, "test_name": test_name},
                              SplitOptions)
    with _platform() as platform:
        for side in split_data(platform, ref, options, project=project):
            _done(side, "split")


@data_app.command("clean")
def clean_command(
    ref: str = typer.Argument(..., help="NAME:V."),
    dedup: Optional[str] = typer.Option(None, "--dedup", help="exact or near: keep the first of each cluster."),
    threshold: float = THRESHOLD,
    redact_pii: bool = typer.Option(False, "--redact-pii", help="Replace personal data with <EMAIL>, <PHONE>, ..."),
    min_tokens: Optional[int] = typer.Option(None, "--min-tokens", help="Drop records with fewer tokens."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Drop records with more tokens."),
    drop_empty: bool = typer.Option(False, "--drop-empty", help="Drop records with an empty field."),
    model: Optional[str] = MODEL, project: str = PROJECT,
) -> None:
    """Make a cleaned version that records what it removed."""
    from tuneforge.config import validate_config
    from tuneforge.services.datasets import CleanOptions, clean_data

    options = validate_config({"dedup": dedup, "threshold": threshold, "redact_pii": redact_pii, "min_tokens": min_tokens,
                               "max_tokens": max_tokens, "drop_empty": drop_empty, "model": model}, CleanOptions)
    with _platform() as platform:
        outcome = clean_data(platform, ref, options, project=project)
    counts = outcome.version.details.get("removed_counts", {})
    console.print("removed: " + (", ".join(f"{n} {why}" for why, n in counts.items()) or "nothing"))
    _done(outcome, "cleaned")


@data_app.command("report")
def report_command(
    ref: str = typer.Argument(..., help="NAME:V."), model: Optional[str] = MODEL,
    max_seq_length: int = typer.Option(2048, "--max-seq-length"), threshold: float = THRESHOLD,
    against: Optional[str] = typer.Option(None, "--against", help="Check leakage against this version (a test set)."),
    language_limit: int = typer.Option(5000, "--language-limit", help="Records whose language is detected."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for report.json/.md and PNGs "
                                          "(default: NAME-vV-report)."), project: str = PROJECT,
) -> None:
    """Write the quality report of a version: JSON, Markdown and PNG histograms."""
    from rich.markdown import Markdown

    from tuneforge.data.quality_render import render_markdown
    from tuneforge.services.data_reports import DataReportOptions, report_data

    from tuneforge.config import validate_config

    options = validate_config({"model": model, "max_seq_length": max_seq_length, "threshold": threshold,
                               "against": against, "language_limit": language_limit}, DataReportOptions)
    folder = output or Path(f"{ref.replace(':', '-v').replace('@', '-')}-report")
    with _platform() as platform:
        report = report_data(platform, ref, options, project=project, output=folder)
    console.print(Markdown(render_markdown(report, title=f"data quality report: {report['version']['ref']}")))
    console.print(f"[green]wrote[/] {folder}/report.json, report.md and PNG histograms")


@data_app.command("collect")
def collect_command(name: str = typer.Argument(..., help="Data set for the chat records (created if new)."),
                    from_traffic: str = typer.Option(..., "--from-traffic", help="Served model whose logged requests "
                                                     "are read: NAME (every version), NAME@ALIAS, NAME:V or a served "
                                                     "name."),
                    since: Optional[str] = typer.Option(None, "--since", help="Requests from this date (YYYY-MM-DD)."),
                    include_liked: bool = typer.Option(False, "--include-liked", help="Thumbs-up answers become chat "
                                                       "records too (corrections always do)."),
                    pairs_name: Optional[str] = typer.Option(None, "--pairs-name", help="Data set for the preference "
                                                             "pairs (default NAME-pairs)."),
                    project: str = PROJECT) -> None:
    """New versions of NAME (chat records: corrected answers) and NAME-pairs (preference pairs: correction vs
    answer) from the requests a server logged with --log-requests and their feedback."""
    from tuneforge.cli.ab import parse_since
    from tuneforge.services.traffic import collect_from_traffic

    with _platform() as platform:
        result = collect_from_traffic(platform, name, project=project, model=from_traffic, since=parse_since(since),
                                      include_liked=include_liked, pairs_name=pairs_name)
    console.print(f"{result['requests']} logged requests ({result['with_text']} with their text)")
    _done(result["chat"], "collected")
    if result["pairs"] is not None:
        _done(result["pairs"], "collected pairs")
