"""What a finished run leaves in its folder: the adapter or model, summary.json, a model card."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import yaml

from tuneforge.models.inference import LABELS
from tuneforge.storage.files import atomic_directory, atomic_write_text
from tuneforge.storage.rundir import CONFIG, METRICS, PROVENANCE, README, RunDir


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: GPU memory allocated on CUDA, else the peak resident set size."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def save_outputs(model: Any, tokenizer: Any, run: RunDir, *, config: Any, summary: dict, trains_adapter: bool,
                 state_dict: dict[str, Any] | None = None) -> Path:
    """Write the adapter (PEFT format) or the full model, then summary.json and README.md.

    Each folder is written to a staging name and renamed, so an interrupted save leaves no half model. The
    model card goes both to the run folder and into the adapter / model folder (in place of PEFT's blank
    template), so a copied adapter still says how it was made. ``state_dict``: the full weights gathered from
    sharded processes (FSDP), in place of the model's own.
    """
    target = run.adapter if trains_adapter else run.model
    provenance = run.read_provenance()
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(staging)
        if config.task.name == "classification":  # the head's classes, to rebuild it when loading
            (staging / LABELS).write_text(json.dumps(summary["dataset"]["labels"]))
        (staging / README).write_text(model_card(config, summary, load_path=".", adapter=trains_adapter,
                                                 provenance=provenance))
    atomic_write_text(run.summary, json.dumps(summary, indent=2))
    atomic_write_text(run.readme, model_card(config, summary, load_path=target.name, adapter=trains_adapter,
                                             provenance=provenance))
    return target


def model_card(config: Any, summary: dict, *, load_path: str, adapter: bool,
               provenance: dict[str, Any] | None = None) -> str:
    """A Markdown model card (Hugging Face metadata header): base model, method, data and its sha256, metrics,
    the full config, and how to load the result.

    Args:
        config: The run's TrainConfig.
        summary: The run's summary (``summary.json``).
        load_path: The folder to load, as the card's reader sees it (``adapter`` from the run folder, ``.``
            inside the adapter folder).
        adapter: Whether the result is a PEFT adapter (else a full model).
        provenance: The run's ``provenance.json`` (data sha256, versions), when written.
    """
    base = summary["model"]
    header = {"base_model": base, "library_name": "peft" if adapter else "transformers",
              "tags": ["tuneforge", config.method.name, config.task.name]}
    sha = (provenance or {}).get("data_sha256", {})
    rows = [
        ("base model", f"`{base}` (loaded from `{summary['base_model']}`)"),
        ("method", f"`{json.dumps(config.method.model_dump(mode='json'))}`"),
        ("task", f"`{config.task.name}`"),
        ("data", f"{', '.join(f'`{s.label}`' for s in config.data.train_sources())} "
                 f"({summary['data_format']}, {summary['dataset']['examples']} examples)"),
        *(("data file", f"`{path}` sha256 `{digest}`") for path, digest in sha.items()),
        ("train loss (mean over the run)", _fmt(summary["train_loss"])),
        ("final loss (last logged step)", _fmt(summary.get("final_loss"))),
        ("eval loss", _fmt(summary["eval_loss"])),
        ("steps / epochs", f"{summary['global_step']} / {_fmt(summary['epochs'])}"),
        ("trained tokens (carrying a loss, all epochs)", _fmt(summary["trained_tokens"])),
        ("tokens/s", _fmt(summary["tokens_per_second"])),
        ("runtime", f"{summary['runtime_seconds']} s on {summary['device']} ({summary['precision']})"),
        ("trainable / total parameters", f"{summary['trainable_parameters']:,} / {summary['total_parameters']:,}"),
        ("chat template", f"`{config.data.chat_template}` (saved with the tokenizer)"),
        ("seed", str(config.seed)),
        *((f"{name} version", version) for name, version in ((provenance or {}).get("packages") or {}).items()),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    config_yaml = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return (
        f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n# {Path(config.output_dir).name}\n\n"
        f"Fine-tuned with tuneforge ({config.method.name} on `{base}`).\n\n| | |\n|---|---|\n{table}\n\n"
        f"## Use\n\n```python\n{_loading_code(summary['base_model'], load_path, adapter=adapter)}\n```\n\n"
        f"## Config\n\n```yaml\n{config_yaml}```\n\nThe run folder also holds `{CONFIG}`, per-step metrics in "
        f"`{METRICS}`, and `{PROVENANCE}` (package versions, data sha256, git commit, command, machine).\n"
    )


def _loading_code(base_model: str, load_path: str, *, adapter: bool) -> str:
    if not adapter:
        return (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained({load_path!r})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({load_path!r})")
    return (f"from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"base = AutoModelForCausalLM.from_pretrained({base_model!r})\n"
            f"model = PeftModel.from_pretrained(base, {load_path!r})\n"
            f"tokenizer = AutoTokenizer.from_pretrained({load_path!r})")


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
