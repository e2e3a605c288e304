"""Evaluation use cases: evaluate a model, compare two, gate a model on its baseline, write reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.config import validate_config
from tuneforge.errors import ConfigError, suggest
from tuneforge.evaluation.compare import (
    Regression,
    check_regressions,
    compare_reports,
    on_shared_examples,
    parse_max_drop,
)
from tuneforge.evaluation.metrics import METRICS
from tuneforge.evaluation.results import ComparisonReport, EvalReport, load_report, store_result
from tuneforge.evaluation.suites import BUILTIN_TASKS, SuiteConfig, SuiteLike, TaskConfig, load_tasks
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.settings import Settings

__all__ = ["check_regression", "compare", "compare_stored", "evaluate", "load_tasks", "suite_from_options"]


def suite_from_options(
    *, data: str | Path | None = None, task: str | None = None, suite: str | Path | None = None, **options: Any
) -> SuiteConfig | Path:
    """The suite that command-line options describe: a suite file, or one task (a data file or a built-in).

    Args:
        data: A test data file.
        task: A built-in task name.
        suite: A suite YAML file (then no other option may be given).
        **options: Task fields (``format``, ``task_type``, ``metrics``, ``limit``, ``max_new_tokens``,
            ``system_prompt``) and suite fields (``batch_size``, ``latency_samples``, ``resamples``,
            ``confidence``, ``seed``); ``None`` values are left to the config's defaults.

    Raises:
        ConfigError: Not exactly one of data, task and suite, or an option that does not validate.
    """
    if sum(x is not None for x in (data, task, suite)) != 1:
        raise ConfigError("give exactly one of --data FILE, --task NAME and --suite FILE",
                          hint="e.g. tuneforge eval MODEL --data test.jsonl  (or --task profile-extraction)")
    given = {k: v for k, v in options.items() if v is not None}
    _check_names(task, given.get("metrics"))
    if suite is not None:
        if given:
            raise ConfigError(f"options {', '.join(sorted(given))} cannot be combined with --suite",
                              hint="set them in the suite file instead")
        return Path(suite)
    task_fields = set(TaskConfig.model_fields)
    task_config = {k: v for k, v in given.items() if k in task_fields}
    task_config.update({"data": str(data)} if data is not None else {"builtin": task})
    suite_fields = {k: v for k, v in given.items() if k not in task_fields}
    try:
        return validate_config({"tasks": [task_config], **suite_fields}, SuiteConfig)
    except ConfigError as exc:  # name the command-line option, not the field of the suite it fills
        option = "--" + (exc.field or "").rsplit(".", 1)[-1].replace("_", "-")
        raise ConfigError(f"option {option}: {exc.message.split(': ', 1)[-1]}",
                          hint="'tuneforge eval --help' (or compare --help) lists the options and their values",
                          ) from None


def _check_names(task: str | None, metrics: list[str] | None) -> None:
    """Unknown built-in tasks and metrics from the command line, with the close name as the hint."""
    for kind, name, known in (("built-in task", task, BUILTIN_TASKS), *(("metric", m, METRICS) for m in metrics or [])):
        if name is not None and name not in known:
            guess = suggest(name, known)
            raise ConfigError(f"unknown {kind} '{name}'",
                              hint=(f"{guess} " if guess else "") + f"known: {', '.join(known)}")


def evaluate(
    model: str, suite: SuiteLike, *, settings: Settings, store: bool = True, progress: ProgressCallback = no_progress
) -> EvalReport:
    """Evaluate a model on a suite and store the result under ``settings.evaluations_dir``.

    Args:
        model: Builtin alias, model directory, .gguf file, run directory or adapter directory.
        suite: A :class:`SuiteConfig`, a mapping, or a suite YAML path (see :func:`suite_from_options`).
        settings: Where models are cached and results stored.
        store: Keep the result in the evaluations folder.
        progress: Receives stages and generation steps.

    Raises:
        ConfigError, DataError: Bad suite or data (before any model is loaded).
        NotFoundError: The model cannot be found.
    """
    from tuneforge.evaluation.runner import evaluate_loaded_tasks

    config, tasks = load_tasks(suite)
    report = evaluate_loaded_tasks(model, tasks, config, settings=settings, progress=progress)
    if store:
        store_result(report, folder=settings.evaluations_dir)
    return report


def compare(
    model_a: str, model_b: str, suite: SuiteLike, *, settings: Settings, store: bool = True,
    progress: ProgressCallback = no_progress,
) -> ComparisonReport:
    """Evaluate A and B on the same examples and compare them (the offline A/B test).

    A model may also be given as the JSON report of an earlier evaluation on the same data, which is
    then reused instead of running the model again. ``settings`` says where models are cached and
    results stored; the other arguments are :func:`evaluate`'s.

    Raises:
        ConfigError, DataError: Bad suite or data (before any model is loaded), or a reused report that
            was measured on other data.
        NotFoundError: A model cannot be found.
    """
    from tuneforge.evaluation.runner import evaluate_loaded_tasks

    config, tasks = load_tasks(suite)
    reports = []
    for label, reference in (("A", model_a), ("B", model_b)):
        progress(ProgressEvent(ProgressKind.STAGE, f"model {label}: {reference}"))
        reports.append(_reused_report(reference)
                       or evaluate_loaded_tasks(reference, tasks, config, settings=settings, progress=progress))
    result = compare_reports(*reports, resamples=config.resamples, confidence=config.confidence, seed=config.seed)
    if store:
        store_result(result, folder=settings.evaluations_dir)
    return result


def compare_stored(
    report_a: str | Path, report_b: str | Path, *, settings: Settings, resamples: int | None = None,
    confidence: float | None = None, seed: int | None = None, store: bool = True,
) -> ComparisonReport:
    """Compare two stored evaluation reports on the examples they share, running no model.

    Args:
        report_a: JSON report of A's evaluation (``tuneforge eval ... --output``).
        report_b: JSON report of B's.
        settings: Where results are stored.
        resamples: Paired-bootstrap resamples (``None``: the suite config's default).
        confidence: Level of the intervals (``None``: the default).
        seed: Seed of the resampling (``None``: the default).
        store: Keep the comparison in the evaluations folder.

    Raises:
        NotFoundError, ConfigError: A report is missing or not an evaluation, or they share no data.
    """
    loaded = []
    for reference in (report_a, report_b):
        report = _reused_report(str(reference))
        if report is None:
            raise ConfigError(f"{reference} is not a JSON evaluation report",
                              hint="pass two files written by 'tuneforge eval MODEL ... --output FILE.json', or "
                              "give --data to evaluate two models")
        loaded.append(report)
    a, b = on_shared_examples(*loaded)
    given = {"resamples": resamples, "confidence": confidence, "seed": seed}
    options = validate_config({"tasks": [{"builtin": "arithmetic"}], **{k: v for k, v in given.items() if v is not None}},
                              SuiteConfig)  # the defaults and bounds of the suite's fields
    result = compare_reports(a, b, resamples=options.resamples, confidence=options.confidence, seed=options.seed)
    if store:
        store_result(result, folder=settings.evaluations_dir)
    return result


def _reused_report(reference: str) -> EvalReport | None:
    if not (reference.endswith(".json") and Path(reference).is_file()):
        return None
    report = load_report(reference)
    if not isinstance(report, EvalReport):
        raise ConfigError(f"{reference} is a comparison report; pass a model or an evaluation report",
                          hint="write one with 'tuneforge eval MODEL ... --output FILE'")
    return report


def check_regression(
    report: EvalReport, *, baseline: EvalReport | str | Path, max_drop: dict[str, float] | list[str] | None = None
) -> list[Regression]:
    """The regression gate: metrics that fell further below the baseline's than allowed.

    Args:
        report: The new evaluation.
        baseline: The baseline's evaluation (or its JSON report).
        max_drop: Allowed drop by metric (a mapping, or ``METRIC=VALUE`` items); by default every metric
            both reports have, with no drop allowed.

    Returns:
        The regressions; empty when the gate passes.
    """
    if not isinstance(baseline, EvalReport):
        loaded = load_report(baseline)
        if not isinstance(loaded, EvalReport):
            raise ConfigError(f"baseline {baseline} is a comparison report", hint="pass an evaluation report")
        baseline = loaded
    limits = parse_max_drop(max_drop) if isinstance(max_drop, list) else max_drop
    if not limits:
        limits = {m: 0.0 for t in report.tasks if baseline.task(t.name) for m in t.metrics
                  if m in baseline.task(t.name).metrics}
    return check_regressions(report, baseline, limits)
