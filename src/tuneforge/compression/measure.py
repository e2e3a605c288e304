"""What a stage costs and how good it is: size on disk, parameters, latency on this machine, quality.

Quality goes through the evaluation module (:func:`tuneforge.evaluation.runner.run_task`) on any stage whose
model has transformers' ``generate``, which the llama.cpp and ONNX adapters provide too.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.compression.stage import Stage
from tuneforge.evaluation.results import TaskResult
from tuneforge.evaluation.suites import LoadedTask, SuiteConfig
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.storage.files import folder_bytes


class LatencyFigures(BaseModel):
    """Single-request latency on this machine: time to first token and time per further token."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(description="Requests timed, one at a time.")
    tokens: int = Field(description="Tokens generated per request (end-of-sequence ignored).")
    ttft_p50_ms: float = Field(description="Median time to the first generated token (the prompt's prefill), ms.")
    per_token_p50_ms: float = Field(description="Median time per generated token after the first, ms.")
    device: str = Field(description="Device the requests ran on.")


class StageFigures(BaseModel):
    """Size, parameters, latency and quality of the model before the first step or after one step."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="'source' or the step, e.g. 'prune wanda'.")
    format: str = Field(description="What the artifact is (e.g. 'transformers fp32', 'gguf q8_0').")
    disk_mb: float = Field(description="Size on disk of the artifact, MB.")
    parameters: int = Field(description="Weights in the model, however stored.")
    nonzero_parameters: int = Field(description="Weights that are not zero.")
    runs_on: list[str] = Field(description="Devices the artifact runs on.")
    latency: LatencyFigures | None = Field(description="Latency on this machine (None when not timed).")
    quality: dict[str, dict[str, float]] = Field(description="Score by metric, by task.")
    tasks: list[TaskResult] = Field(description="The evaluation module's per-task results (answers included).")
    details: dict[str, Any] = Field(description="What the step did (measured sparsity, removed heads, loss...).")
    seconds: float = Field(description="Time the step took (0 for the source).")


def measure_stage(
    stage: Stage, *, label: str, tasks: list[LoadedTask], suite: SuiteConfig | None, latency_samples: int,
    latency_tokens: int, seconds: float = 0.0, progress: ProgressCallback = no_progress,
) -> StageFigures:
    """Measure a stage: its files, its parameters, its latency and its quality on the recipe's tasks."""
    from tuneforge.evaluation.runner import run_task

    results = []
    if suite is not None:
        quiet = suite.model_copy(update={"latency_samples": 0})  # latency is timed below, on equal work
        for task in tasks:
            progress(ProgressEvent(ProgressKind.STAGE, f"{label}: {task.name} ({len(task.examples)} examples)"))
            results.append(run_task(stage.model, stage.tokenizer, task, suite=quiet, progress=progress))
    latency = None
    if latency_samples:
        prompts = _latency_prompts(tasks, latency_samples)
        latency = time_latency(stage.model, stage.tokenizer, prompts, tokens=latency_tokens)
    return StageFigures(
        label=label, format=stage.format, disk_mb=round(folder_bytes(stage.files) / 2**20, 2),
        parameters=stage.parameters, nonzero_parameters=stage.nonzero_parameters, runs_on=stage.runs_on,
        latency=latency, quality={r.name: r.metrics for r in results}, tasks=results, details=stage.details,
        seconds=round(seconds, 2),
    )


def _latency_prompts(tasks: list[LoadedTask], count: int) -> list[list[dict[str, str]]]:
    from tuneforge.evaluation.evaluate import split_reference

    prompts = [split_reference(e)[0] for t in tasks if t.format != "text" for e in t.examples[:count]][:count]
    default = [{"role": "user", "content": "Write one sentence about the sea."}]
    return prompts or [default] * count


def time_latency(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], *, tokens: int) -> LatencyFigures:
    """Time single greedy requests of exactly ``tokens`` new tokens (one warm-up request first)."""
    from tuneforge.evaluation.runner import model_device, token_times

    firsts, per_token = [], []
    for i, prompt in enumerate([prompts[0], *prompts]):
        started, stamps, _ = token_times(model, tokenizer, prompt, max_new_tokens=tokens, min_new_tokens=tokens)
        if i == 0:
            continue  # warm-up: allocations, kernel selection, lazy initialisation
        firsts.append(stamps[0] - started)
        per_token.append((stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1))
    return LatencyFigures(
        requests=len(firsts), tokens=tokens, ttft_p50_ms=round(statistics.median(firsts) * 1000, 2),
        per_token_p50_ms=round(statistics.median(per_token) * 1000, 3), device=str(model_device(model)),
    )
