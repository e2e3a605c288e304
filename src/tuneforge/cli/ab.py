"""``tuneforge ab report`` (A/B tests between registered versions) and ``tuneforge feedback`` (a score for a
response of the inference server). Both work on the database of the CLI's settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

import typer
from rich.table import Table

from tuneforge.cli.registry import PROJECT, cli_actor, cli_platform, cli_project
from tuneforge.cli.render import make_console
from tuneforge.errors import ConfigError

ab_app = typer.Typer(help="A/B tests between versions of a registered model.", no_args_is_help=True)
console = make_console()


def parse_since(text: Optional[str]) -> Optional[float]:
    """``2026-12-01`` or ``2026-12-01T10:00`` (local time) -> Unix time; ``None`` stays ``None``."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ConfigError(f"--since {text!r} is not a date", field="since",
                          hint="give YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def _figure(value: Any, digits: str = ".3g") -> str:
    return "-" if value is None else format(value, digits)


@ab_app.command("report")
def report_command(name: str = typer.Argument(..., help="Registered model name."),
                   alias: str = typer.Option("production", "--alias", help="The split alias."),
                   metric: str = typer.Option("score", "--metric", help="score (feedback) or latency_ms."),
                   since: Optional[str] = typer.Option(None, "--since", help="Requests from this date (default: "
                                                       "since the split started)."),
                   min_samples: int = typer.Option(30, "--min-samples", help="Fewest values per version for a verdict."),
                   promote: bool = typer.Option(False, "--promote", help="Move the alias to the winner when the "
                                                "verdict names one (ends the split)."),
                   as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                   project: Optional[str] = PROJECT) -> None:
    """Per version: requests, latency p50/p95, feedback rate, mean score; the difference with the control, its 95%
    bootstrap interval, a permutation test, and a verdict."""
    import json

    from tuneforge.services.ab import ab_report

    with cli_platform() as platform:
        report = ab_report(platform, name, project=cli_project(project), alias=alias, metric=metric,
                           since=parse_since(since), min_samples=min_samples, promote=promote, actor=cli_actor())
    if as_json:
        return console.print_json(json.dumps(report))
    table = Table(title=f"{name}@{alias} ({'split running' if report['split_active'] else 'split ended'})")
    for column in ("version", "weight", "requests", "p50 ms", "p95 ms", "feedback rate", "mean score"):
        table.add_column(column)
    for v in report["variants"]:
        table.add_row(f"{v['version']}{' (control)' if v['version'] == report['control'] else ''}", f"{v['weight']:g}",
                      str(v["requests"]), _figure(v["latency_p50_ms"], ".1f"), _figure(v["latency_p95_ms"], ".1f"),
                      f"{v['feedback_rate']:.0%}", _figure(v["mean_score"]))
    console.print(table)
    for c in report["comparisons"]:
        console.print(f"version {c['version']} - control on {metric}: {_figure(c['difference'])} "
                      f"[95% CI {_figure(c['low'])}, {_figure(c['high'])}], p = {_figure(c['p_value'])}: "
                      f"{c['outcome']}", highlight=False)
    verdict = report["verdict"]
    console.print(f"verdict: {verdict['decision']} ({verdict['reason']})", highlight=False)
    if promote:
        console.print(f"promoted: {name}@{alias} -> {report['promoted']}" if report["promoted"]
                      else "not promoted: the verdict names no winner", highlight=False)


def feedback_command(response_id: str = typer.Argument(..., help="The response's id (chatcmpl-...)."),
                     score: str = typer.Option(..., "--score", help="up, down, or a number."),
                     correction: Optional[str] = typer.Option(None, "--correction", help="A corrected answer."),
                     project: Optional[str] = PROJECT) -> None:
    """Record feedback on a response of the inference server (as POST /v1/feedback does)."""
    from tuneforge.services.traffic import record_feedback

    with cli_platform() as platform:
        record = record_feedback(platform, response_id, project=cli_project(project), score=score,
                                 correction=correction)
    console.print(f"feedback {record.id} on {record.request_id}: score {record.score:g}", highlight=False)
