"""The ``eval`` and ``compare`` commands: parse options, call services.evaluation, render the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markdown import Markdown

from tuneforge.cli.registry import attach_cli_scores, resolve_cli_model
from tuneforge.cli.render import ProgressRenderer, make_console
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.settings import Settings

console = make_console()

DATA = typer.Option(None, "--data", "-d", help="Test data (.jsonl/.json/.csv/.parquet) in a training format; the last "
                    "assistant message (or output / completion / label) is the reference.")
TASK = typer.Option(None, "--task", help="A built-in generated task: profile-extraction, arithmetic, sentiment.")
SUITE = typer.Option(None, "--suite", help="A suite YAML file listing tasks (data, format, metrics, limits).")
METRICS = typer.Option(None, "--metrics", "-m", help="Comma-separated metrics (default: the task type's): exact_match, "
                       "accuracy, macro_f1, token_f1, bleu, chrf, rouge1, rouge2, rougeL, perplexity.")
TASK_TYPE = typer.Option(None, "--task-type", help="generation, qa, classification or language_modeling "
                         "(default: from the data format).")
FORMAT = typer.Option(None, "--format", help="Data format (default: detected from the keys).")
LIMIT = typer.Option(None, "--limit", help="Score only the first N examples.")
MAX_NEW = typer.Option(None, "--max-new-tokens", help="Longest answer (default 64, or the built-in task's).")
BATCH = typer.Option(None, "--batch-size", help="Prompts per generation batch (default 16).")
LATENCY = typer.Option(None, "--latency-samples", help="Requests timed one at a time for latency and TTFT (default 8).")
OUTPUT = typer.Option(None, "--output", "-o", help="Write the JSON report here.")
MARKDOWN = typer.Option(None, "--markdown", help="Write the Markdown table here.")


def _suite(data: Optional[Path], task: Optional[str], suite: Optional[Path], metrics: Optional[str],
           **options: Any) -> Any:
    from tuneforge.services.evaluation import suite_from_options

    names = [m.strip() for m in metrics.split(",") if m.strip()] if metrics is not None else None
    return suite_from_options(data=data, task=task, suite=suite, metrics=names, **options)


def _write(report: Any, output: Optional[Path], markdown: Optional[Path], chart: Optional[Path] = None, *,
           settings: Settings) -> None:
    from tuneforge.evaluation.reports import write_report
    from tuneforge.evaluation.results import result_path

    for path in (output, markdown, chart):
        if path is not None:
            console.print(f"[green]wrote[/] {write_report(report, path)}")
    console.print(f"stored as {result_path(report, folder=settings.evaluations_dir)}")


def eval_command(
    model: str = typer.Argument(..., help="Model reference (builtin alias, directory, .gguf), run directory, adapter "
                                "directory, merged model, or registered version (name, name:3, name@alias)."),
    data: Optional[Path] = DATA, task: Optional[str] = TASK, suite: Optional[Path] = SUITE,
    metrics: Optional[str] = METRICS, task_type: Optional[str] = TASK_TYPE, data_format: Optional[str] = FORMAT,
    limit: Optional[int] = LIMIT, max_new_tokens: Optional[int] = MAX_NEW, batch_size: Optional[int] = BATCH,
    latency_samples: Optional[int] = LATENCY, output: Optional[Path] = OUTPUT, markdown: Optional[Path] = MARKDOWN,
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Fail when worse than this JSON report."),
    max_drop: Optional[list[str]] = typer.Option(None, "--max-drop", help="METRIC=VALUE: the drop from the baseline "
                                                 "allowed (repeatable; default: no drop on any shared metric)."),
) -> None:
    """Evaluate MODEL on test data, a built-in task or a suite: quality metrics and cost figures."""
    from tuneforge.evaluation.reports import eval_markdown
    from tuneforge.services.evaluation import check_regression, evaluate

    if max_drop and baseline is None:
        raise ConfigError("--max-drop needs --baseline REPORT.json", hint="tuneforge eval MODEL --data test.jsonl "
                          "--baseline old.json --max-drop exact_match=0.02")
    config = _suite(data, task, suite, metrics, task_type=task_type, format=data_format, limit=limit,
                    max_new_tokens=max_new_tokens, batch_size=batch_size, latency_samples=latency_samples)
    settings = Settings.from_env()
    resolved = resolve_cli_model(model)  # a registered version: name, name:3, name@alias
    with ProgressRenderer(console) as progress:
        report = evaluate(resolved.path, config, settings=settings, progress=progress)
    console.print(Markdown(eval_markdown(report)))
    _write(report, output, markdown, settings=settings)
    attach_cli_scores(resolved, report)
    if baseline is not None:
        regressions = check_regression(report, baseline=baseline, max_drop=max_drop or None)
        if regressions:
            raise TuneforgeError(
                f"regression against the baseline {baseline}: " + "; ".join(r.describe() for r in regressions),
                hint="the model is worse than its baseline beyond --max-drop; do not promote it "
                "(or raise --max-drop if the drop is acceptable)",
            )
        console.print(f"[green]gate passed:[/] no metric fell beyond the allowed drop from {baseline}")


def compare_command(
    model_a: str = typer.Argument(..., help="Model A (the reference, e.g. the base model), or its eval JSON report."),
    model_b: str = typer.Argument(..., help="Model B (the candidate, e.g. the fine-tune), or its eval JSON report."),
    data: Optional[Path] = DATA, task: Optional[str] = TASK, suite: Optional[Path] = SUITE,
    metrics: Optional[str] = METRICS, task_type: Optional[str] = TASK_TYPE, data_format: Optional[str] = FORMAT,
    limit: Optional[int] = LIMIT, max_new_tokens: Optional[int] = MAX_NEW, batch_size: Optional[int] = BATCH,
    latency_samples: Optional[int] = LATENCY,
    resamples: Optional[int] = typer.Option(None, "--resamples", help="Paired-bootstrap resamples (default 1000)."),
    confidence: Optional[float] = typer.Option(None, "--confidence", help="Confidence level (default 0.95)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the bootstrap (default 0)."),
    output: Optional[Path] = OUTPUT, markdown: Optional[Path] = MARKDOWN,
    chart: Optional[Path] = typer.Option(None, "--chart", help="Write a PNG chart of the comparison here."),
) -> None:
    """Compare A and B on the same examples: differences with paired-bootstrap CIs, McNemar, a verdict.

    With two JSON reports and no --data / --task / --suite, the stored reports are compared on the
    examples they share, and no model runs.
    """
    from tuneforge.services.evaluation import compare, compare_stored

    settings = Settings.from_env()
    if data is None and task is None and suite is None and all(m.endswith(".json") for m in (model_a, model_b)):
        report = compare_stored(model_a, model_b, settings=settings, resamples=resamples, confidence=confidence,
                                seed=seed)
        _show_comparison(report, output, markdown, chart, settings=settings)
        shared = ", ".join(f"{t.name}: {t.examples}" for t in report.a.tasks)
        console.print(f"compared on the examples both reports share ({shared})", highlight=False)
        return
    config = _suite(data, task, suite, metrics, task_type=task_type, format=data_format, limit=limit,
                    max_new_tokens=max_new_tokens, batch_size=batch_size, latency_samples=latency_samples,
                    resamples=resamples, confidence=confidence, seed=seed)
    with ProgressRenderer(console) as progress:
        report = compare(resolve_cli_model(model_a).path, resolve_cli_model(model_b).path, config, settings=settings,
                         progress=progress)
    _show_comparison(report, output, markdown, chart, settings=settings)


def _show_comparison(report: Any, output: Optional[Path], markdown: Optional[Path], chart: Optional[Path], *,
                     settings: Settings) -> None:
    from tuneforge.evaluation.reports import comparison_markdown

    console.print(Markdown(comparison_markdown(report)))
    _write(report, output, markdown, chart, settings=settings)
    console.print(f"[bold]verdict:[/] {report.verdict} ({report.primary})")
