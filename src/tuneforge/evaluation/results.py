"""The shape of evaluation and comparison results, and where they are kept.

One pydantic shape serves the JSON report written with ``--output``, the API's response and the stored
copy under ``Settings.evaluations_dir/KEY.json`` (``TUNEFORGE_HOME/evaluations``), where KEY hashes the model
reference(s), the data's sha256 and the config, so that a result can be found again (the SQL Store replaces
the folder later).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneforge.errors import ConfigError, NotFoundError
from tuneforge.storage.files import atomic_write_text

Verdict = Literal["A better", "B better", "no significant difference"]


class ResultModel(BaseModel):
    """Base of the result models: unknown keys are errors, so a foreign JSON file is refused."""

    model_config = ConfigDict(extra="forbid")


class SpeedFigures(ResultModel):
    """Speed of generation on one task."""

    requests: int = Field(description="Requests timed one at a time for latency and time to first token.")
    latency_p50_ms: float | None = Field(description="Median latency of a request (prompt to full answer), ms.")
    latency_p95_ms: float | None = Field(description="95th-percentile latency of a request, ms.")
    ttft_p50_ms: float | None = Field(description="Median time to first token, ms.")
    ttft_p95_ms: float | None = Field(description="95th-percentile time to first token, ms.")
    generated_tokens: int = Field(description="Answer tokens of the batched pass over all examples.")
    generation_seconds: float = Field(description="Wall time of the batched pass.")
    tokens_per_second: float | None = Field(description="Generated tokens per second in the batched pass.")


class ModelFigures(ResultModel):
    """What the model costs: size, parameters, memory."""

    reference: str = Field(description="The model reference as given.")
    base: str = Field(description="Directory of the base (or full) model weights.")
    adapter: str | None = Field(description="Directory of the adapter, if any.")
    parameters: int = Field(description="Parameters of the model as evaluated (adapters merged).")
    adapter_parameters: int = Field(description="Parameters of the adapter (0 without one).")
    disk_mb: float = Field(description="Size on disk of the files needed to load it (base + adapter), MB.")
    load_seconds: float = Field(description="Time to load the model.")
    peak_memory_mb: float = Field(description="Peak memory while loading and evaluating, MB.")
    memory: str = Field(description="What peak_memory_mb measures: 'process RSS' (CPU) or 'CUDA allocated'.")
    device: str = Field(description="Device the model ran on.")


class ExampleResult(ResultModel):
    """One example: its answer and its per-example statistics (what the paired bootstrap resamples)."""

    line: int = Field(description="Line (or row) of the example in its file.")
    reference: str | None = Field(description="The reference answer (None for raw text).")
    prediction: str | None = Field(description="The generated answer (None when nothing was generated).")
    stats: dict[str, Any] = Field(description="Per-example statistics by metric.")


class TaskResult(ResultModel):
    """Scores of one task."""

    name: str = Field(description="Task name.")
    data: str = Field(description="Data file, or builtin:NAME.")
    data_sha256: str = Field(description="sha256 of the data file (or of the generated records).")
    format: str = Field(description="Data format the examples were read as.")
    task_type: str = Field(description="generation, qa, classification or language_modeling.")
    examples: int = Field(description="Examples scored.")
    max_new_tokens: int = Field(description="Longest generated answer.")
    metrics: dict[str, float] = Field(description="Score by metric.")
    speed: SpeedFigures | None = Field(description="Generation speed (None when nothing was generated).")
    per_example: list[ExampleResult] = Field(description="Answers and statistics, in data order.")


class EvalReport(ResultModel):
    """The evaluation of one model on a suite of tasks."""

    kind: Literal["evaluation"] = Field("evaluation", description="Report kind.")
    key: str = Field(description="Key of the stored result: hash of model, data sha256 and config.")
    model: str = Field(description="The model reference.")
    created_at: str = Field(description="UTC time the evaluation finished (ISO 8601).")
    tuneforge_version: str = Field(description="tuneforge version that produced it.")
    config: dict[str, Any] = Field(description="The suite config, with every default.")
    model_figures: ModelFigures = Field(description="Size, parameters and memory of the model.")
    tasks: list[TaskResult] = Field(description="Results by task.")
    seconds: float = Field(description="Wall time of the whole evaluation.")

    def task(self, name: str) -> TaskResult | None:
        """The result of a task by name."""
        return next((t for t in self.tasks if t.name == name), None)


class MetricComparison(ResultModel):
    """A versus B on one metric of one task."""

    task: str = Field(description="Task name.")
    metric: str = Field(description="Metric name.")
    a: float = Field(description="Score of A.")
    b: float = Field(description="Score of B.")
    difference: float = Field(description="B minus A.")
    ci_low: float = Field(description="Lower end of the paired-bootstrap confidence interval of B minus A.")
    ci_high: float = Field(description="Upper end of that interval.")
    higher_is_better: bool = Field(description="False for perplexity.")
    mcnemar_p: float | None = Field(None, description="McNemar exact p-value (0/1 metrics only).")
    only_a: int | None = Field(None, description="Examples only A got right (0/1 metrics only).")
    only_b: int | None = Field(None, description="Examples only B got right (0/1 metrics only).")
    verdict: Verdict = Field(description="Which model is better on this metric, if significantly.")


class ComparisonReport(ResultModel):
    """Two models on the same examples: differences, confidence intervals, tests and a verdict."""

    kind: Literal["comparison"] = Field("comparison", description="Report kind.")
    key: str = Field(description="Key of the stored result.")
    model_a: str = Field(description="Reference of model A.")
    model_b: str = Field(description="Reference of model B.")
    created_at: str = Field(description="UTC time the comparison finished (ISO 8601).")
    tuneforge_version: str = Field(description="tuneforge version that produced it.")
    confidence: float = Field(description="Level of the intervals and of the verdict.")
    resamples: int = Field(description="Paired-bootstrap resamples.")
    seed: int = Field(description="Seed of the resampling.")
    primary: str = Field(description="TASK/METRIC that decides the overall verdict (the first task's first metric).")
    verdict: Verdict = Field(description="Overall verdict, from the primary metric.")
    metrics: list[MetricComparison] = Field(description="Comparisons by task and metric.")
    a: EvalReport = Field(description="Full evaluation of A.")
    b: EvalReport = Field(description="Full evaluation of B.")


def now_iso() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def result_key(kind: str, models: list[str], data_sha256: list[str], config: dict[str, Any]) -> str:
    """A short stable hash of what a result depends on: the models, the data and the config."""
    payload = json.dumps({"kind": kind, "models": models, "data": data_sha256, "config": config}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def result_path(report: EvalReport | ComparisonReport, *, folder: Path) -> Path:
    """Where a result is stored: ``folder/KEY.json``."""
    return Path(folder) / f"{report.key}.json"


def store_result(report: EvalReport | ComparisonReport, *, folder: Path) -> Path:
    """Write a result to ``folder/KEY.json`` (atomically; the same key replaces the older result).

    Args:
        report: The evaluation or comparison.
        folder: The folder of stored results (``Settings.evaluations_dir``).
    """
    path = result_path(report, folder=folder)
    atomic_write_text(path, report.model_dump_json(indent=2))
    return path


def load_report(path: str | Path) -> EvalReport | ComparisonReport:
    """Read a JSON report written by ``tuneforge eval --output`` or ``tuneforge compare --output``.

    Raises:
        NotFoundError: The file does not exist.
        ConfigError: It is not JSON, or not a tuneforge report.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"report not found: {path}", hint="write one with 'tuneforge eval MODEL ... --output FILE'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from None
    model = ComparisonReport if isinstance(data, dict) and data.get("kind") == "comparison" else EvalReport
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(
            f"not a tuneforge {model.__name__[:-6].lower()} report: {err['msg']}",
            file=str(path), field=".".join(map(str, err["loc"])) or None,
            hint="pass the JSON file that 'tuneforge eval --output' wrote",
        ) from None


def find_results(*, folder: Path, model: str | None = None, data_sha256: str | None = None) -> list[Path]:
    """Stored results in ``folder`` of a model reference and/or a data file's sha256, newest first.

    A comparison matches when either of its models does and its data does.
    """
    matches = []
    for path in Path(folder).glob("*.json"):
        try:
            report = load_report(path)
        except (ConfigError, NotFoundError):
            continue  # a foreign or half-written file is not a result
        evaluations = [report.a, report.b] if isinstance(report, ComparisonReport) else [report]
        if model is not None and all(e.model != model for e in evaluations):
            continue
        if data_sha256 is not None and all(t.data_sha256 != data_sha256 for t in evaluations[0].tasks):
            continue
        matches.append((report.created_at, path))
    return [path for _, path in sorted(matches, reverse=True)]
