"""Evaluate one model on loaded tasks: answers, metrics, and what it costs (speed, memory, size)."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneforge import __version__
from tuneforge.errors import ConfigError
from tuneforge.evaluation.evaluate import split_reference
from tuneforge.evaluation.generation import generate_answers, stop_ids
from tuneforge.evaluation.metrics import METRICS
from tuneforge.evaluation.results import (
    EvalReport,
    ExampleResult,
    ModelFigures,
    SpeedFigures,
    TaskResult,
    now_iso,
    result_key,
)
from tuneforge.evaluation.suites import LoadedTask, SuiteConfig
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.storage.files import folder_bytes

if TYPE_CHECKING:
    from tuneforge.settings import Settings


def canonical_reference(reference: str) -> str:
    """A model reference as stored: an existing path made absolute, an alias or hub id as given."""
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference


def evaluate_loaded_tasks(
    reference: str, tasks: list[LoadedTask], suite: SuiteConfig, *, settings: Settings,
    progress: ProgressCallback = no_progress,
) -> EvalReport:
    """Load a model, run every task on it, and free it again.

    Args:
        reference: Builtin alias, model directory, .gguf file, run directory or adapter directory.
        tasks: Tasks from :func:`tuneforge.evaluation.suites.load_task`.
        suite: Generation settings (batch size, latency samples) and the config stored with the result.
        settings: Where models are cached (``model_cache_dir``, for builtin and GGUF models).
        progress: Receives a stage per model and task, and a step per generation batch.

    Returns:
        The report (not yet stored).
    """
    started = time.perf_counter()
    with PeakMemory() as peak:
        progress(ProgressEvent(ProgressKind.STAGE, f"loading {reference}"))
        model, tokenizer, figures = load_model(reference, cache_dir=settings.model_cache_dir)
        results = []
        for task in tasks:
            progress(ProgressEvent(ProgressKind.STAGE, f"task {task.name}: {len(task.examples)} examples, "
                                   f"metrics {', '.join(task.metrics)}"))
            results.append(run_task(model, tokenizer, task, suite=suite, progress=progress))
    figures.update(peak_memory_mb=round(peak.peak_mb, 1), memory=peak.kind)
    del model
    gc.collect()
    config = suite.model_dump(mode="json")
    model_ref = canonical_reference(reference)
    return EvalReport(
        key=result_key("evaluation", [model_ref], [t.data_sha256 for t in tasks], config),
        model=model_ref, created_at=now_iso(), tuneforge_version=__version__, config=config,
        model_figures=ModelFigures(**figures), tasks=results, seconds=round(time.perf_counter() - started, 2),
    )


def load_model(reference: str, *, cache_dir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """Load a model for evaluation (adapter merged, on the GPU when there is one) with its cost figures."""
    import torch

    from tuneforge.models.inference import load_for_inference, merge_adapter

    started = time.perf_counter()
    model, tokenizer, source = load_for_inference(reference, cache_dir=cache_dir, merge=False)
    adapter_parameters = 0
    if source.adapter is not None:
        tag = f".{model.active_adapter}."  # PEFT names adapter weights '...lora_A.default.weight'
        adapter_parameters = sum(p.numel() for n, p in model.named_parameters() if tag in n)
        model = merge_adapter(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    figures = {
        "reference": reference, "base": str(source.base), "adapter": str(source.adapter) if source.adapter else None,
        "parameters": sum(p.numel() for p in model.parameters()), "adapter_parameters": adapter_parameters,
        "disk_mb": round(sum(folder_bytes(p) for p in (source.base, source.adapter) if p) / 2**20, 2),
        "load_seconds": round(time.perf_counter() - started, 2), "device": device,
    }
    return model, tokenizer, figures


def run_task(
    model: Any, tokenizer: Any, task: LoadedTask, *, suite: SuiteConfig, progress: ProgressCallback = no_progress
) -> TaskResult:
    """Score a loaded model on one task: generate (if a metric needs answers), then compute each metric."""
    chats = task.format != "text"
    prompts, references = zip(*(split_reference(e) for e in task.examples)) if chats else ((), ())
    predictions: list[str] | None = None
    speed = None
    stats: dict[str, list[Any]] = {}
    head = is_classifier(model)
    if head and "perplexity" in task.metrics:
        raise ConfigError(f"task {task.name}: perplexity needs a language model, but this model is a classifier",
                          field="metrics", hint="score a classifier with accuracy, macro_f1 or exact_match")
    if head and any(METRICS[m].score is not None for m in task.metrics):
        progress(ProgressEvent(ProgressKind.STAGE, f"{task.name}: classifying with the model's head"))
        predictions = classify_texts(model, tokenizer, [p[-1]["content"] for p in prompts], batch_size=suite.batch_size)
        for name in task.metrics:
            stats[name] = METRICS[name].score(predictions, list(references))
    elif any(METRICS[m].score is not None for m in task.metrics):
        predictions, speed = generate_timed(
            model, tokenizer, list(prompts), max_new_tokens=task.max_new_tokens, batch_size=suite.batch_size,
            latency_samples=suite.latency_samples,
            on_batch=lambda done, total: progress(
                ProgressEvent(ProgressKind.STEP, f"{task.name}: generate", step=done, total=total)),
        )
        for name in task.metrics:
            if METRICS[name].score is not None:
                stats[name] = METRICS[name].score(predictions, list(references))
    if "perplexity" in task.metrics:
        progress(ProgressEvent(ProgressKind.STAGE, f"{task.name}: perplexity of the references"))
        stats["perplexity"] = reference_nll(model, tokenizer, task.examples, batch_size=min(suite.batch_size, 4))
    values = {name: round(METRICS[name].aggregate(np.asarray(stats[name], dtype=float)), 6) for name in task.metrics}
    per_example = [
        ExampleResult(
            line=e.line, reference=references[i] if chats else None,
            prediction=predictions[i] if predictions is not None else None,
            stats={name: stats[name][i] for name in task.metrics},
        )
        for i, e in enumerate(task.examples)
    ]
    return TaskResult(
        name=task.name, data=task.data, data_sha256=task.data_sha256, format=task.format, task_type=task.task_type,
        examples=len(task.examples), max_new_tokens=task.max_new_tokens, metrics=values, speed=speed,
        per_example=per_example,
    )


def is_classifier(model: Any) -> bool:
    """Whether the model answers through a sequence-classification head (a ``task: classification`` run)."""
    return type(model).__name__.endswith("ForSequenceClassification")


def classify_texts(model: Any, tokenizer: Any, texts: list[str], *, batch_size: int = 16) -> list[str]:
    """The head's label (``config.id2label``) for each text, in batches."""
    import torch

    labels: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            logits = model(**batch.to(model.device)).logits  # [B, num_labels]
        labels += [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    return labels


def generate_timed(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], *, max_new_tokens: int, batch_size: int,
    latency_samples: int, on_batch: Any = None,
) -> tuple[list[str], SpeedFigures]:
    """Batched greedy answers with their throughput, then single requests timed for latency and TTFT.

    Generated tokens are counted by re-tokenizing the answers (the batched generator returns text).
    """
    started = time.perf_counter()
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                               on_batch=on_batch)
    seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    latencies, firsts = [], []
    for prompt in prompts[:latency_samples]:
        latency, first = time_request(model, tokenizer, prompt, max_new_tokens=max_new_tokens)
        latencies.append(latency)
        firsts.append(first)

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)) * 1000, 2) if values else None

    speed = SpeedFigures(
        requests=len(latencies), latency_p50_ms=pct(latencies, 50), latency_p95_ms=pct(latencies, 95),
        ttft_p50_ms=pct(firsts, 50), ttft_p95_ms=pct(firsts, 95), generated_tokens=tokens,
        generation_seconds=round(seconds, 3), tokens_per_second=round(tokens / seconds, 2) if seconds else None,
    )
    return answers, speed


def time_request(
    model: Any, tokenizer: Any, prompt: list[dict[str, Any]], *, max_new_tokens: int
) -> tuple[float, float]:
    """Seconds to answer one request alone, and seconds to its first generated token."""
    started, stamps, ended = token_times(model, tokenizer, prompt, max_new_tokens=max_new_tokens,
                                         eos_token_id=stop_ids(model, tokenizer))
    return ended - started, (stamps[0] if stamps else ended) - started


def token_times(
    model: Any, tokenizer: Any, prompt: list[dict[str, Any]], *, max_new_tokens: int, **generate_options: Any
) -> tuple[float, list[float], float]:
    """One greedy request alone: its start, the time each new token arrived, and its end (perf_counter)."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    from tuneforge.data.tokenize import render_prompt

    class Stamps(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.times = 0, []

        def put(self, value: Any) -> None:
            self.calls += 1
            if self.calls > 1:  # the first call carries the prompt
                self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    batch = tokenizer([render_prompt(prompt, tokenizer)], return_tensors="pt", add_special_tokens=False)
    batch = batch.to(model_device(model))
    streamer = Stamps()
    started = time.perf_counter()
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                       streamer=streamer, **generate_options)
    return started, streamer.times, time.perf_counter()


def model_device(model: Any) -> Any:
    """The device of a model's weights (CPU for the llama.cpp and ONNX adapters, which have none)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return "cpu"


def reference_nll(model: Any, tokenizer: Any, examples: list[Any], *, batch_size: int = 4) -> list[list[float]]:
    """Per-example ``[negative log-likelihood, tokens]`` of the reference answers (or of the raw text).

    Chats are scored on their assistant tokens given the conversation before them (the training mask),
    raw texts on all tokens, in blocks of the model's context length.
    """
    import torch

    from tuneforge.data.tokenize import IGNORE_INDEX, tokenize_examples

    block = min(int(getattr(model.config, "max_position_embeddings", 2048) or 2048), 2048)
    rows = []  # (example index, input ids, labels)
    for index, example in enumerate(examples):
        pieces, _ = tokenize_examples([example], tokenizer, max_seq_length=block)
        rows.extend((index, p["input_ids"], p["labels"]) for p in pieces)
    totals = [[0.0, 0] for _ in examples]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(ids) for _, ids, _ in chunk)
        ids = torch.tensor([r[1] + [pad] * (width - len(r[1])) for r in chunk], device=device)  # [b, t]
        labels = torch.tensor([r[2] + [IGNORE_INDEX] * (width - len(r[2])) for r in chunk], device=device)
        lengths = torch.tensor([len(r[1]) for r in chunk], device=device)  # [b]
        mask = torch.arange(width, device=device)[None, :] < lengths[:, None]  # [b, t]
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask.long()).logits.float()  # [b, t, vocab]
        targets = labels[:, 1:]  # token t is predicted from positions < t
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )  # [b, t-1]
        for (index, _, _), row_nll, row_targets in zip(chunk, nll, targets):
            totals[index][0] += float(row_nll.sum())
            totals[index][1] += int((row_targets != IGNORE_INDEX).sum())
    return totals


class PeakMemory:
    """Peak memory inside a ``with`` block: CUDA allocated memory on a GPU, else the process RSS.

    The RSS is sampled every 10 ms by a background thread, so it counts the whole process (the Python
    runtime and libraries included), not the model alone.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak_mb, self.kind = interval, 0.0, "process RSS"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            self.kind = "CUDA allocated"
            torch.cuda.reset_peak_memory_stats()
            return self
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self._thread is None:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        import psutil

        self.peak_mb = max(self.peak_mb, psutil.Process().memory_info().rss / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
