"""The quickstart: a task the base model cannot do, a LoRA fine-tune on this machine, before and after."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from tuneforge.config import TrainConfig
from tuneforge.evaluation.results import TaskResult
from tuneforge.evaluation.suites import SuiteConfig, TaskConfig, load_task
from tuneforge.evaluation.tasks import profile_extraction
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.services.runs import collect_provenance
from tuneforge.settings import Settings
from tuneforge.storage.files import atomic_write_text
from tuneforge.training.run import run_training


@dataclass
class QuickstartResult:
    """Before/after figures of the quickstart."""

    base_accuracy: float
    tuned_accuracy: float
    test_examples: int
    train_seconds: float
    wall_seconds: float
    tokens_per_second: float
    run_dir: str
    adapter: str
    samples: list[dict[str, str]]


def quickstart_config(workdir: Path, *, model: str = "smollm2-135m", seed: int = 42) -> TrainConfig:
    """The config the quickstart trains with (written to ``workdir/config.yaml`` for reuse)."""
    return TrainConfig(
        model=model,
        method={"name": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "auto"},
        data={"train": str(workdir / "data" / "train.jsonl"), "eval": str(workdir / "data" / "eval.jsonl")},
        train={"epochs": 2, "learning_rate": 3.0e-4, "batch_size": 8, "scheduler": "cosine", "warmup": 0.05,
               "max_seq_length": 256},
        seed=seed,
        output_dir=str(workdir / "run"),
    )


def write_task_data(workdir: Path, *, seed: int = 0) -> dict[str, Path]:
    """Write the profile-extraction task's train / eval / test splits as JSONL."""
    splits = profile_extraction(n_train=240, n_eval=40, n_test=60, seed=seed)
    paths = {}
    for name in ("train", "eval", "test"):
        paths[name] = workdir / "data" / f"{name}.jsonl"
        atomic_write_text(paths[name], "".join(json.dumps(r) + "\n" for r in getattr(splits, name)))
    return paths


def run_quickstart(
    *, settings: Settings, workdir: str | Path = "quickstart", model: str = "smollm2-135m",
    progress: ProgressCallback = no_progress,
) -> QuickstartResult:
    """Generate the task, measure the base model, LoRA-tune it, measure again; write ``quickstart.json``.

    ``settings`` says where the builtin model is converted (its cache).
    """
    from tuneforge.evaluation.runner import evaluate_loaded_tasks

    started = time.perf_counter()
    workdir = Path(workdir)
    paths = write_task_data(workdir)
    config = quickstart_config(workdir, model=model)
    atomic_write_text(workdir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    suite = SuiteConfig(tasks=[TaskConfig(data=str(paths["test"]), metrics=["exact_match"], max_new_tokens=48)],
                        latency_samples=0)
    test = load_task(suite.tasks[0])

    def measure(reference: str, label: str) -> TaskResult:
        progress(ProgressEvent(ProgressKind.STAGE,
                               f"measuring the {label} model on {len(test.examples)} test examples"))
        task = dataclasses.replace(test, name=f"eval {label}")
        return evaluate_loaded_tasks(reference, [task], suite, settings=settings, progress=progress).tasks[0]

    base = measure(model, "base")
    trained = run_training(config, settings=settings, overwrite=True, progress=progress,
                           provenance=collect_provenance(config))
    tuned = measure(str(trained.output_dir), "tuned")
    outcome = QuickstartResult(
        base_accuracy=base.metrics["exact_match"],
        tuned_accuracy=tuned.metrics["exact_match"],
        test_examples=len(test.examples),
        train_seconds=trained.summary["runtime_seconds"],
        wall_seconds=round(time.perf_counter() - started, 1),
        tokens_per_second=trained.summary["tokens_per_second"],
        run_dir=str(trained.output_dir),
        adapter=str(trained.model_path),
        samples=[
            {"reference": t.reference, "base": b.prediction, "tuned": t.prediction}
            for b, t in list(zip(base.per_example, tuned.per_example))[:3]
        ],
    )
    atomic_write_text(workdir / "quickstart.json", json.dumps(asdict(outcome), indent=2))
    return outcome
