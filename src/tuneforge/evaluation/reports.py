"""Reports of evaluations and comparisons: JSON for machines, Markdown tables for people, a PNG chart."""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.evaluation.results import ComparisonReport, EvalReport, ModelFigures, TaskResult
from tuneforge.storage.files import atomic_write_text


def _num(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cost_rows(label: str, figures: ModelFigures, tasks: list[TaskResult]) -> list[list[str]]:
    rows = []
    for task in tasks:
        s = task.speed
        rows.append([
            label, task.name, _num(s.latency_p50_ms if s else None), _num(s.latency_p95_ms if s else None),
            _num(s.ttft_p50_ms if s else None), _num(s.tokens_per_second if s else None),
            _num(figures.peak_memory_mb), _num(figures.disk_mb), _num(figures.parameters),
        ])
    return rows


COST_HEADER = ["model", "task", "latency p50 (ms)", "latency p95 (ms)", "TTFT p50 (ms)", "tokens/s",
               "peak memory (MB)", "disk (MB)", "parameters"]


def eval_markdown(report: EvalReport) -> str:
    """Markdown: one row per task and metric, then the cost figures."""
    rows = [[t.name, m, _num(v), str(t.examples)] for t in report.tasks for m, v in t.metrics.items()]
    figures = report.model_figures
    return "\n\n".join([
        f"## Evaluation of `{report.model}`",
        _table(["task", "metric", "score", "examples"], rows),
        f"### Cost ({figures.device}; peak memory is {figures.memory})",
        _table(COST_HEADER, _cost_rows(report.model, figures, report.tasks)),
    ]) + "\n"


def comparison_markdown(report: ComparisonReport) -> str:
    """Markdown: per task and metric, A, B, B - A with its interval, McNemar's p and the verdict."""
    level = f"{report.confidence:.0%} CI"
    rows = [
        [m.task, m.metric + ("" if m.higher_is_better else " (lower is better)"), _num(m.a), _num(m.b),
         f"{m.difference:+.4g}", f"[{m.ci_low:+.4g}, {m.ci_high:+.4g}]",
         _num(m.mcnemar_p, 3) if m.mcnemar_p is not None else "-",
         f"{m.only_a} / {m.only_b}" if m.only_a is not None else "-", m.verdict]
        for m in report.metrics
    ]
    cost = [*_cost_rows("A", report.a.model_figures, report.a.tasks),
            *_cost_rows("B", report.b.model_figures, report.b.tasks)]
    return "\n\n".join([
        f"## Comparison: A = `{report.model_a}`, B = `{report.model_b}`",
        f"**Verdict: {report.verdict}** (on {report.primary}; paired bootstrap with {report.resamples} resamples, "
        f"seed {report.seed}; McNemar's exact test for 0/1 metrics)",
        _table(["task", "metric", "A", "B", "B - A", level, "McNemar p", "only A / only B right", "verdict"], rows),
        f"### Cost ({report.b.model_figures.device}; peak memory is {report.b.model_figures.memory})",
        _table(COST_HEADER, cost),
    ]) + "\n"


def to_markdown(report: EvalReport | ComparisonReport) -> str:
    """The Markdown of either kind of report."""
    return comparison_markdown(report) if isinstance(report, ComparisonReport) else eval_markdown(report)


def comparison_chart(report: ComparisonReport, path: str | Path) -> Path:
    """Draw A and B per task and metric, with B - A and its interval in each panel's title, as a PNG.

    Raises:
        TuneforgeError: matplotlib (a dependency of tuneforge) is missing from the environment.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TuneforgeError("drawing comparison charts needs matplotlib, which is not installed",
                             hint="pip install matplotlib") from None
    rows = report.metrics
    figure, axes = plt.subplots(len(rows), 1, figsize=(7, 1.1 + 1.2 * len(rows)), squeeze=False)
    for axis, m in zip(axes[:, 0], rows):
        axis.barh(["B", "A"], [m.b, m.a], color=["#2a9d8f" if m.verdict == "B better" else "#8d99ae", "#adb5bd"])
        for y, value in enumerate((m.b, m.a)):
            axis.text(value, y, f" {value:.4g}", va="center", fontsize=8)
        axis.set_xlim(0, max(m.a, m.b) * 1.25 or 1.0)
        axis.set_title(f"{m.task} / {m.metric}: B - A = {m.difference:+.3g} "
                       f"[{m.ci_low:+.3g}, {m.ci_high:+.3g}] - {m.verdict}", fontsize=9, loc="left")
        axis.tick_params(labelsize=8)
    figure.suptitle(f"A = {Path(report.model_a).name}   B = {Path(report.model_b).name}   verdict: {report.verdict}",
                    fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)
    return path


def write_report(report: EvalReport | ComparisonReport, path: str | Path) -> Path:
    """Write a report by the file's suffix: ``.md`` Markdown, ``.png`` chart (comparisons), else JSON."""
    path = Path(path)
    if path.suffix == ".png" and isinstance(report, ComparisonReport):
        return comparison_chart(report, path)
    text = to_markdown(report) if path.suffix == ".md" else report.model_dump_json(indent=2)
    atomic_write_text(path, text)
    return path
