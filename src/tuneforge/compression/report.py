"""The compression report: one JSON shape (``report.json``) and its Markdown table (``report.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge import __version__
from tuneforge.compression.measure import StageFigures
from tuneforge.storage.files import atomic_write_text


class CompressionReport(BaseModel):
    """Figures of the source and of every step, and the change from source to result."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="The model reference as given.")
    output: str = Field(description="The output folder; the compressed model is in its model/ folder.")
    created_at: str = Field(description="When the report was written (UTC, ISO 8601).")
    tuneforge_version: str = Field(description="tuneforge version.")
    recipe: dict[str, Any] = Field(description="The recipe as run.")
    stages: list[StageFigures] = Field(description="The source first, then the model after each step.")
    summary: dict[str, Any] = Field(description="Result against source: size reduction, relative quality change, "
                                    "per-token speed-up.")
    seconds: float = Field(description="Wall time of the whole pipeline.")

    @classmethod
    def build(cls, *, reference: str, output: Path, recipe: Any, stages: list[StageFigures],
              seconds: float) -> CompressionReport:
        """Assemble the report and its summary (last stage against the source)."""
        from tuneforge.evaluation.results import now_iso

        return cls(model=reference, output=str(Path(output).resolve()), created_at=now_iso(),
                   tuneforge_version=__version__, recipe=recipe.model_dump(mode="json"), stages=stages,
                   summary=summarize(stages[0], stages[-1]), seconds=round(seconds, 2))


def summarize(source: StageFigures, result: StageFigures) -> dict[str, Any]:
    """Size reduction, relative change of every metric, and per-token speed-up of ``result`` against ``source``."""
    summary: dict[str, Any] = {
        "size_reduction": round(1 - result.disk_mb / source.disk_mb, 4) if source.disk_mb else None,
        "parameters_ratio": round(result.parameters / source.parameters, 4),
    }
    changes = {}
    for task, metrics in result.quality.items():
        for name, value in metrics.items():
            before = source.quality.get(task, {}).get(name)
            if before:
                changes[f"{task}/{name}"] = round((value - before) / abs(before), 4)
    summary["relative_quality_change"] = changes
    if source.latency and result.latency and result.latency.per_token_p50_ms:
        summary["per_token_speedup"] = round(source.latency.per_token_p50_ms / result.latency.per_token_p50_ms, 3)
    return summary


def to_markdown(report: CompressionReport) -> str:
    """A Markdown report: one row per stage with size, parameters, latency and every metric."""
    metric_names = list(dict.fromkeys(f"{t}/{m}" for s in report.stages for t, ms in s.quality.items() for m in ms))
    source = report.stages[0]
    header = ["stage", "format", "disk MB", "vs source", "parameters", "non-zero", "TTFT p50 ms", "ms/token p50",
              "runs on", *metric_names]
    lines = [f"# Compression report: {report.model}", "",
             f"Output: `{report.output}` · tuneforge {report.tuneforge_version} · {report.created_at} · "
             f"{report.seconds:.0f} s", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in report.stages:
        ratio = f"{stage.disk_mb / source.disk_mb:.1%}" if source.disk_mb else "-"
        latency = stage.latency
        cells = [stage.label, stage.format, f"{stage.disk_mb:.1f}", ratio, f"{stage.parameters:,}",
                 f"{stage.nonzero_parameters:,}", f"{latency.ttft_p50_ms:.1f}" if latency else "-",
                 f"{latency.per_token_p50_ms:.2f}" if latency else "-", ", ".join(stage.runs_on)]
        for name in metric_names:
            task, metric = name.split("/", 1)
            value = stage.quality.get(task, {}).get(metric)
            cells.append(f"{value:.4g}" if value is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    summary = report.summary
    lines += ["", "## Result against the source", ""]
    if summary.get("size_reduction") is not None:
        lines.append(f"- size on disk: {summary['size_reduction']:.1%} smaller")
    for name, change in summary.get("relative_quality_change", {}).items():
        lines.append(f"- {name}: {change:+.1%} (relative)")
    if "per_token_speedup" in summary:
        lines.append(f"- per-token latency: {summary['per_token_speedup']:.2f}x the source's speed")
    lines += ["", "## Steps", ""]
    for stage in report.stages[1:]:
        lines.append(f"- **{stage.label}** ({stage.seconds:.1f} s): `{json.dumps(stage.details)[:400]}`")
    return "\n".join(lines) + "\n"


def write_reports(report: CompressionReport, folder: Path) -> None:
    """Write ``report.json`` and ``report.md`` into ``folder`` (atomically)."""
    atomic_write_text(folder / "report.json", report.model_dump_json(indent=2))
    atomic_write_text(folder / "report.md", to_markdown(report))
