"""What a study leaves: ``best.yaml`` (trains as it is), ``trials.csv``, ``summary.md`` and PNG plots.

The plots come from ``optuna.visualization.matplotlib``: optimization history, parameter importances
(fANOVA), parallel coordinates and slices; the Pareto front for two objectives. A plot that the study cannot
support yet (too few finished trials, one parameter) is skipped and named in the summary.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneforge.errors import MissingDependencyError, NotFoundError
from tuneforge.hpo.space import LoadedSearch, apply_overrides
from tuneforge.storage.files import atomic_write_text

if TYPE_CHECKING:
    import optuna


@dataclass
class StudyOutputs:
    """The files written for a study, and the plots that were skipped (with why)."""

    best: Path | None = None
    trials: Path | None = None
    summary: Path | None = None
    plots: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several), best first by the first objective."""
    if len(study.directions) == 1:
        return [study.best_trial]
    front = study.best_trials
    maximize = study.directions[0].name == "MAXIMIZE"
    return sorted(front, key=lambda t: t.values[0], reverse=maximize)


def best_config(study: optuna.Study, search: LoadedSearch) -> dict[str, Any]:
    """The base config with the best trial's values (first of the Pareto front for several objectives).

    Raises:
        NotFoundError: No trial has completed yet.
    """
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise NotFoundError(f"study '{study.study_name}' has no completed trial yet",
                            hint="wait for a trial to complete, or run more trials with --resume")
    best = best_trials(study)[0]
    config = apply_overrides(search.base, best.params)
    config.pop("output_dir", None)
    return {**config, "output_dir": f"runs/{study.study_name}-best"}


def write_outputs(study: optuna.Study, search: LoadedSearch, *, folder: Path, plots: bool = True) -> StudyOutputs:
    """Write best.yaml, trials.csv, summary.md and the plots of ``study`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = StudyOutputs()
    out.trials = folder / "trials.csv"
    atomic_write_text(out.trials, trials_csv(study))
    try:
        out.best = folder / "best.yaml"
        atomic_write_text(out.best, yaml.safe_dump(best_config(study, search), sort_keys=False))
    except NotFoundError as exc:
        out.best, out.skipped["best.yaml"] = None, exc.message
    if plots:
        write_plots(study, folder=folder, out=out)
    out.summary = folder / "summary.md"
    atomic_write_text(out.summary, summary_markdown(study, search, out))
    return out


def trials_csv(study: optuna.Study) -> str:
    """One row per trial: number, state, values, parameters, steps, run directory, error."""
    trials = study.get_trials(deepcopy=False)
    params = list(dict.fromkeys(p for t in trials for p in t.params))
    metrics = [o["metric"] for o in study.user_attrs.get("search", {}).get("objective", [])] or [
        f"value_{i}" for i in range(len(study.directions))]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", *metrics, *params, "steps", "seconds", "run_dir", "error"])
    for t in trials:
        values = list(t.values) if t.values else [""] * len(metrics)
        seconds = round(t.duration.total_seconds(), 2) if t.duration else ""
        writer.writerow([t.number, t.state.name.lower(), *values, *(t.params.get(p, "") for p in params),
                         t.user_attrs.get("steps", ""), seconds, t.user_attrs.get("run_dir", ""),
                         t.user_attrs.get("error", "")])
    return buffer.getvalue()


def summary_markdown(study: optuna.Study, search: LoadedSearch, out: StudyOutputs) -> str:
    """The study in Markdown: counts, the best trial(s) and their values, importances, the files."""
    from tuneforge.hpo.study import study_counts

    counts = study_counts(study)
    metrics = [o.metric for o in search.config.objective]
    lines = [f"# Study {study.study_name}", "",
             f"- sampler {search.config.sampler}, pruner {search.config.pruner}, {search.config.n_trials} trials "
             f"wanted; objectives: " + ", ".join(f"{o.metric} ({o.resolved_direction})" for o in search.config.objective),
             f"- {counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed, {counts.running} running", ""]
    if counts.complete:
        title = "Best trial" if len(metrics) == 1 else "Pareto front"
        lines += [f"## {title}", "", "| trial | " + " | ".join(metrics) + " | parameters |",
                  "|---|" + "---|" * len(metrics) + "---|"]
        for t in best_trials(study):
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
            lines.append(f"| {t.number} | " + " | ".join(f"{v:.4g}" for v in t.values) + f" | {params} |")
        lines.append("")
    importances = _importances(study)
    if importances:
        lines += ["## Parameter importances (fANOVA)", ""] + [f"- {k}: {v:.3f}" for k, v in importances.items()] + [""]
    files = [p for p in (out.best, out.trials) if p] + out.plots
    lines += ["## Files", ""] + [f"- {p.name}" for p in files]
    lines += [f"- {name} skipped: {why}" for name, why in out.skipped.items()]
    return "\n".join(lines) + "\n"


def _importances(study: optuna.Study) -> dict[str, float]:
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) > 1 or len(complete) < 2 or not complete[0].params:
        return {}
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError, ImportError):
        return {}


def write_plots(study: optuna.Study, *, folder: Path, out: StudyOutputs) -> None:
    """The PNG plots, each through ``optuna.visualization.matplotlib``; a plot that cannot be drawn is skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as vis
    except ImportError:
        raise MissingDependencyError("matplotlib", extra="hpo", purpose="the study's plots") from None
    import optuna

    several = len(study.directions) > 1
    first = (lambda t: t.values[0]) if several else None
    names = study.user_attrs.get("search", {}).get("objective", [{}])
    label = names[0].get("metric", "objective") if names else "objective"
    plots: dict[str, Any] = {
        "optimization_history": lambda: vis.plot_optimization_history(study, target=first, target_name=label),
        "param_importances": lambda: vis.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=first, target_name=label),
        "parallel_coordinate": lambda: vis.plot_parallel_coordinate(study, target=first, target_name=label),
        "slice": lambda: vis.plot_slice(study, target=first, target_name=label),
    }
    if len(study.directions) == 2:
        plots["pareto_front"] = lambda: vis.plot_pareto_front(
            study, target_names=[n.get("metric", f"objective {i}") for i, n in enumerate(names)])
    for name, draw in plots.items():
        _draw(name, draw, folder=folder, out=out, plt=plt)


def _draw(name: str, draw: Any, *, folder: Path, out: StudyOutputs, plt: Any) -> None:
    import warnings

    path = folder / f"{name}.png"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            axes = draw()
        figure = _figure_of(axes)
        if figure is None or not _has_data(figure):
            out.skipped[path.name] = "not enough finished trials"
            return
        figure.set_size_inches(max(figure.get_size_inches()[0], 7), max(figure.get_size_inches()[1], 4.5))
        tmp = path.with_suffix(".tmp.png")
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
        tmp.replace(path)
        out.plots.append(path)
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
        out.skipped[path.name] = str(exc) or type(exc).__name__
    finally:
        plt.close("all")


def _figure_of(axes: Any) -> Any:
    if hasattr(axes, "figure"):
        return axes.figure
    try:
        return next(iter(axes.flat)).figure  # an array of axes (slice, several parameters)
    except (AttributeError, StopIteration):
        return None


def _has_data(figure: Any) -> bool:
    return any(ax.lines or ax.collections or ax.patches for ax in figure.axes)

