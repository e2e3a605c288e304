"""A versus B on the same examples, and the regression gate of a model against its baseline.

Verdict of a metric: for 0/1 metrics (exact match, accuracy), McNemar's exact test at ``1 - confidence``;
for the others, whether the paired-bootstrap interval of B minus A excludes zero. The overall verdict is
the verdict of the primary metric: the first metric of the first task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneforge import __version__
from tuneforge.errors import ConfigError
from tuneforge.evaluation.metrics import METRICS
from tuneforge.evaluation.results import ComparisonReport, EvalReport, MetricComparison, TaskResult, now_iso, result_key
from tuneforge.evaluation.stats import mcnemar_exact, paired_bootstrap


def compare_reports(
    a: EvalReport, b: EvalReport, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> ComparisonReport:
    """Compare two evaluations of the same tasks on the same data.

    Args:
        a: Evaluation of model A.
        b: Evaluation of model B.
        resamples: Paired-bootstrap resamples.
        confidence: Level of the intervals; McNemar's test uses ``1 - confidence`` as its threshold.
        seed: Seed of the resampling.

    Raises:
        ConfigError: The reports share no task, or a task's data or examples differ.
    """
    rows = []
    for task_a in a.tasks:
        task_b = b.task(task_a.name)
        if task_b is None:
            continue
        _check_same_examples(task_a, task_b)
        for metric in (m for m in task_a.metrics if m in task_b.metrics):
            rows.append(compare_metric(task_a, task_b, metric, resamples=resamples, confidence=confidence, seed=seed))
    if not rows:
        raise ConfigError("the two evaluations share no task and metric to compare",
                          hint="evaluate both models on the same data (or suite)")
    primary = rows[0]
    return ComparisonReport(
        key=result_key("comparison", [a.model, b.model], [t.data_sha256 for t in a.tasks],
                       {"a": a.config, "b": b.config, "resamples": resamples, "confidence": confidence, "seed": seed}),
        model_a=a.model, model_b=b.model, created_at=now_iso(), tuneforge_version=__version__,
        confidence=confidence, resamples=resamples, seed=seed, primary=f"{primary.task}/{primary.metric}",
        verdict=primary.verdict, metrics=rows, a=a, b=b,
    )


def on_shared_examples(a: EvalReport, b: EvalReport) -> tuple[EvalReport, EvalReport]:
    """Cut two stored evaluations down to the examples they share, so they can be compared in pairs.

    Two tasks match by name and data sha256; their examples match by line (one report may have used
    ``--limit``). Each kept task's metrics are recomputed over the shared examples; tasks on other data
    are left out.

    Raises:
        ConfigError: No task of one report was run on the same data as in the other.
    """
    tasks_a, tasks_b = [], []
    for task_a in a.tasks:
        task_b = b.task(task_a.name)
        if task_b is None or task_b.data_sha256 != task_a.data_sha256:
            continue
        lines = {e.line for e in task_a.per_example} & {e.line for e in task_b.per_example}
        if lines:
            tasks_a.append(_subset(task_a, lines))
            tasks_b.append(_subset(task_b, lines))
    if not tasks_a:
        raise ConfigError(
            f"the reports of {a.model} and {b.model} share no task on the same data "
            f"(A: {', '.join(f'{t.name} on {t.data}' for t in a.tasks)}; "
            f"B: {', '.join(f'{t.name} on {t.data}' for t in b.tasks)})",
            hint="evaluate both models on the same data file, or pass --data to evaluate them again",
        )
    return a.model_copy(update={"tasks": tasks_a}), b.model_copy(update={"tasks": tasks_b})


def _subset(task: TaskResult, lines: set[int]) -> TaskResult:
    kept = [e for e in task.per_example if e.line in lines]
    metrics = {m: round(METRICS[m].aggregate(np.asarray([e.stats[m] for e in kept], dtype=float)), 6)
               for m in task.metrics if m in METRICS and all(m in e.stats for e in kept)}
    return task.model_copy(update={"per_example": kept, "examples": len(kept), "metrics": metrics})


def _check_same_examples(a: TaskResult, b: TaskResult) -> None:
    if a.data_sha256 != b.data_sha256 or [e.line for e in a.per_example] != [e.line for e in b.per_example]:
        raise ConfigError(
            f"task '{a.name}' was evaluated on different examples for A ({a.data}, {a.examples} examples) "
            f"and B ({b.data}, {b.examples} examples)",
            hint="a paired comparison needs both models on the same file with the same limit",
        )


def compare_metric(
    a: TaskResult, b: TaskResult, metric: str, *, resamples: int, confidence: float, seed: int
) -> MetricComparison:
    """Difference, paired-bootstrap interval, McNemar's test (0/1 metrics) and verdict for one metric."""
    spec = METRICS[metric]
    stats_a = np.asarray([e.stats[metric] for e in a.per_example], dtype=float)
    stats_b = np.asarray([e.stats[metric] for e in b.per_example], dtype=float)
    boot = paired_bootstrap(stats_a, stats_b, spec.aggregate, resamples=resamples, confidence=confidence, seed=seed)
    mcnemar = mcnemar_exact(stats_a.astype(int).tolist(), stats_b.astype(int).tolist()) if spec.binary else None
    significant = mcnemar.p_value < 1 - confidence if mcnemar else boot.significant
    b_wins = (boot.difference > 0) == spec.higher_is_better
    verdict = "no significant difference" if not significant or boot.difference == 0 else (
        "B better" if b_wins else "A better")
    return MetricComparison(
        task=a.name, metric=metric, a=a.metrics[metric], b=b.metrics[metric], difference=round(boot.difference, 6),
        ci_low=round(boot.low, 6), ci_high=round(boot.high, 6), higher_is_better=spec.higher_is_better,
        mcnemar_p=mcnemar.p_value if mcnemar else None, only_a=mcnemar.only_a if mcnemar else None,
        only_b=mcnemar.only_b if mcnemar else None, verdict=verdict,
    )


@dataclass(frozen=True)
class Regression:
    """A metric that fell further below its baseline than allowed.

    Attributes:
        task: Task name.
        metric: Metric name.
        baseline: The baseline's score.
        current: The new score.
        drop: How much worse the new score is (in the metric's units; a rise for perplexity).
        allowed: The allowed drop.
    """

    task: str
    metric: str
    baseline: float
    current: float
    drop: float
    allowed: float

    def describe(self) -> str:
        """One line for people: which metric fell by how much."""
        return (f"{self.task}/{self.metric} fell by {self.drop:.4g} ({self.baseline:.4g} -> {self.current:.4g}), "
                f"more than the allowed {self.allowed:.4g}")


def parse_max_drop(items: list[str]) -> dict[str, float]:
    """Parse ``METRIC=VALUE`` items (``--max-drop exact_match=0.02``) into a mapping.

    Raises:
        ConfigError: An item is not METRIC=VALUE, names an unknown metric, or has a negative value.
    """
    limits = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            number = float(value) if sep else None
        except ValueError:
            number = None
        if number is None or number < 0:
            raise ConfigError(f"--max-drop '{item}' is not METRIC=VALUE with a value >= 0",
                              hint="e.g. --max-drop exact_match=0.02 (scores are fractions; BLEU and chrF 0-100)")
        if name.strip() not in METRICS:
            raise ConfigError(f"--max-drop names an unknown metric '{name}'", hint=f"known: {', '.join(METRICS)}")
        limits[name.strip()] = number
    return limits


def check_regressions(report: EvalReport, baseline: EvalReport, max_drop: dict[str, float]) -> list[Regression]:
    """The metrics of ``report`` that fell further below ``baseline`` than ``max_drop`` allows.

    Every task the two reports share is checked; a metric in ``max_drop`` must be in at least one of them.

    Raises:
        ConfigError: The reports share no task, a shared task used other data, or a gated metric is in
            neither.
    """
    shared = [(t, baseline.task(t.name)) for t in report.tasks if baseline.task(t.name) is not None]
    if not shared:
        raise ConfigError(f"the baseline ({baseline.model}) has none of the tasks evaluated now "
                          f"({', '.join(t.name for t in report.tasks)})",
                          hint="run the same suite or data as the baseline")
    for now, before in shared:
        if now.data_sha256 != before.data_sha256:
            raise ConfigError(f"task '{now.name}' used other data than the baseline ({now.data} vs {before.data})",
                              hint="a regression gate compares the same test data; re-run the baseline on it")
    found = []
    for metric, allowed in max_drop.items():
        pairs = [(n, b) for n, b in shared if metric in n.metrics and metric in b.metrics]
        if not pairs:
            raise ConfigError(f"--max-drop {metric}: the metric is not in both the report and the baseline",
                              hint="add it with --metrics, or gate on a metric both reports have")
        sign = 1 if METRICS[metric].higher_is_better else -1
        for now, before in pairs:
            drop = sign * (before.metrics[metric] - now.metrics[metric])
            if drop > allowed + 1e-12:
                found.append(Regression(now.name, metric, before.metrics[metric], now.metrics[metric], drop, allowed))
    return found
