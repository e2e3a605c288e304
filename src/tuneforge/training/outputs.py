"""What a finished run leaves in its folder: the adapter or model, summary.json, a model card."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

from tuneforge.models.inference import LABELS
from tuneforge.storage.files import atomic_directory, atomic_write_text
from tuneforge.storage.rundir import ADAPTER, CONFIG, METRICS, RunDir


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: GPU memory allocated on CUDA, else the peak resident set size."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def save_outputs(model: Any, tokenizer: Any, run: RunDir, *, config: Any, summary: dict, trains_adapter: bool) -> Path:
    """Write the adapter (PEFT format) or the full model, then summary.json and README.md.

    Each folder is written to a staging name and renamed, so an interrupted save leaves no half model.
    """
    target = run.adapter if trains_adapter else run.model
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if config.task.name == "classification":  # the head's classes, to rebuild it when loading
            (staging / LABELS).write_text(json.dumps(summary["dataset"]["labels"]))
    atomic_write_text(run.summary, json.dumps(summary, indent=2))
    atomic_write_text(run.readme, model_card(config, summary, target.name))
    return target


def model_card(config: Any, summary: dict, artifact: str) -> str:
    """A Markdown model card with how the model was made and what it measured."""
    method = config.method.model_dump()
    loading = (
        f"from peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
        f"base = AutoModelForCausalLM.from_pretrained({summary['base_model']!r})\n"
        f"model = PeftModel.from_pretrained(base, '{artifact}')"
        if artifact == ADAPTER
        else f"from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained('{artifact}')"
    )
    rows = [
        ("base model", f"`{config.model}`"),
        ("method", f"`{json.dumps(method)}`"),
        ("data", f"{', '.join(f'`{s.label}`' for s in config.data.train_sources())} ({summary['data_format']}, {summary['dataset']['examples']} examples)"),
        ("train loss", _fmt(summary["train_loss"])),
        ("eval loss", _fmt(summary["eval_loss"])),
        ("steps / epochs", f"{summary['global_step']} / {_fmt(summary['epochs'])}"),
        ("trained tokens", str(summary["trained_tokens"])),
        ("tokens/s", _fmt(summary["tokens_per_second"])),
        ("runtime", f"{summary['runtime_seconds']} s on {summary['device']} ({summary['precision']})"),
        ("trainable / total parameters", f"{summary['trainable_parameters']:,} / {summary['total_parameters']:,}"),
        ("chat template", f"`{config.data.chat_template}` (saved with the tokenizer)"),
        ("seed", str(config.seed)),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"# {Path(config.output_dir).name}\n\nFine-tuned with tuneforge.\n\n| | |\n|---|---|\n{table}\n\n"
        f"## Use\n\n```python\n{loading}\n```\n\nThe full config is in `{CONFIG}`; per-step metrics in "
        f"`{METRICS}`.\n"
    )


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
