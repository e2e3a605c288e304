"""The objective of a trial: train the base config with the trial's values, then score it on its own split."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.hpo.space import EVAL_LOSS, SPEED_METRICS, LoadedSearch, ObjectiveConfig
from tuneforge.progress import ProgressCallback, no_progress

if TYPE_CHECKING:
    import optuna

    from tuneforge.settings import Settings
    from tuneforge.training.run import TrainResult


def suggest_params(trial: optuna.Trial, search: LoadedSearch) -> dict[str, Any]:
    """The trial's value for each dotted path of the space (Optuna's ``suggest_*``)."""
    params: dict[str, Any] = {}
    for name, param in search.config.space.items():
        if param.type == "float":
            step = None if param.log else param.step
            params[name] = trial.suggest_float(name, param.low, param.high, log=param.log, step=step)
        elif param.type == "int":
            params[name] = trial.suggest_int(name, param.low, param.high, log=param.log,
                                             step=1 if param.log else param.step)
        else:
            params[name] = trial.suggest_categorical(name, param.choices)
    return params


def trial_dir(output: Path, number: int) -> Path:
    """The run directory of trial ``number`` under a study's output folder."""
    return output / "trials" / f"trial-{number:04d}"


def run_trial(trial: optuna.Trial, search: LoadedSearch, *, settings: Settings, output: Path,
              run_dir: Path | None = None, progress: ProgressCallback = no_progress,
              extra_callbacks: Sequence[Any] = ()) -> list[float]:
    """Train one trial's config (pruned through its eval loss) and return its objective values.

    Args:
        trial: The Optuna trial (asked by ``study.optimize``).
        search: The checked search.
        settings: Model cache and home.
        output: The study's output folder; the trial trains in ``trials/trial-NNNN`` under it ...
        run_dir: ... unless this names its run directory (a platform job's own).
        progress: Receives the trial's training events.
        extra_callbacks: More TrainerCallbacks (a platform job's pause control).

    Raises:
        optuna.TrialPruned: The pruner stopped the trial (training ended at that evaluation).
    """
    from tuneforge.hpo.callbacks import TrialCallback
    from tuneforge.training.run import run_training

    params = suggest_params(trial, search)
    run_dir = run_dir or trial_dir(output, trial.number)
    _log_start(output, trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    config = search.trial_config(params, output_dir=str(run_dir))
    maximize = search.config.directions[0] == "maximize"
    callback = TrialCallback(trial, maximize=maximize, prune=search.config.pruner != "none",
                             max_steps=search.config.max_steps)
    result = run_training(config, settings=settings, overwrite=True, progress=progress,
                          extra_callbacks=[callback, *extra_callbacks])
    trial.set_user_attr("steps", result.summary["global_step"])
    trial.set_user_attr("train_loss", result.summary.get("train_loss"))
    values = objective_values(result, search.config.objective, settings=settings, progress=progress)
    for objective, value in zip(search.config.objective, values):
        trial.set_user_attr(objective.metric, value)
    return values


def _log_start(output: Path, number: int) -> None:
    """One line per trial start in ``output/trials.log`` (trial, process, time): which process ran which trial."""
    output.mkdir(parents=True, exist_ok=True)
    with (output / "trials.log").open("a", encoding="utf-8") as handle:
        handle.write(f"{number} {os.getpid()} {time.time():.3f}\n")


def objective_values(result: TrainResult, objectives: list[ObjectiveConfig], *, settings: Settings,
                     progress: ProgressCallback = no_progress) -> list[float]:
    """Each objective's value for a trained run: its eval loss, or an evaluation of the run on the objective's data."""
    from tuneforge.evaluation.runner import evaluate_loaded_tasks
    from tuneforge.evaluation.suites import SuiteConfig, TaskConfig, load_task

    scored = [o for o in objectives if o.metric != EVAL_LOSS]
    report = None
    if scored:
        tasks = [TaskConfig(data=o.data, limit=o.limit, max_new_tokens=o.max_new_tokens,
                            metrics=None if o.metric in SPEED_METRICS else [o.metric]) for o in scored]
        speed = any(o.metric in SPEED_METRICS for o in scored)
        suite = SuiteConfig(tasks=tasks, latency_samples=4 if speed else 0)
        loaded = [load_task(t, field=f"objective.{i}") for i, t in enumerate(tasks)]
        report = evaluate_loaded_tasks(str(result.output_dir), loaded, suite, settings=settings, progress=progress)
    values = []
    for objective in objectives:
        if objective.metric == EVAL_LOSS:
            values.append(float(result.summary["eval_loss"]))
            continue
        task = report.tasks[scored.index(objective)]
        value = getattr(task.speed, objective.metric, None) if objective.metric in SPEED_METRICS else (
            task.metrics[objective.metric])
        values.append(float(value) if value is not None else float("nan"))
    return values
