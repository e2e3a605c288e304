"""Combine several adapters of one base model into one (task arithmetic, linear, TIES, DARE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tuneforge.config.models import StrictModel
from tuneforge.errors import ConfigError, ConflictError
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.settings import Settings

# tuneforge name -> PEFT's add_weighted_adapter combination_type
COMBINATIONS = {
    "task_arithmetic": "cat",  # exact sum of the weighted updates: rank grows to the sum of ranks
    "linear": "linear",  # weighted average of A and B (same rank needed): cheap, approximate
    "svd": "svd",  # weighted sum of updates, re-factorized to a fixed rank
    "ties": "ties",  # trim to density, elect signs, disjoint merge
    "dare_linear": "dare_linear",  # random drop to density, rescale, sum
    "dare_ties": "dare_ties",
}


class MergeAdaptersConfig(StrictModel):
    """How to combine LoRA adapters trained on one base model."""

    adapters: list[str] = Field(min_length=2, description="Run directories or adapter directories to combine.")
    weights: list[float] | None = Field(None, description="One weight per adapter (default: 1.0 each).")
    method: Literal["task_arithmetic", "linear", "svd", "ties", "dare_linear", "dare_ties"] = Field(
        "task_arithmetic", description="How the updates are combined."
    )
    density: float | None = Field(
        None, gt=0, le=1, description="Fraction of each update kept (ties, dare_*; default 0.5)."
    )
    output: str = Field(description="Folder for the combined adapter (PEFT format).")

    @model_validator(mode="after")
    def _consistent(self) -> MergeAdaptersConfig:
        if self.weights is not None and len(self.weights) != len(self.adapters):
            raise ValueError(f"{len(self.weights)} weights for {len(self.adapters)} adapters: give one weight each")
        if self.density is not None and self.method not in ("ties", "dare_linear", "dare_ties"):
            raise ValueError("density applies to ties, dare_linear and dare_ties only")
        return self


def merge_adapters(
    config: MergeAdaptersConfig, *, settings: Settings, progress: ProgressCallback = no_progress
) -> Path:
    """Load every adapter on the shared base, combine them with PEFT, save the result as an adapter."""
    from peft import PeftModel

    from tuneforge.models.inference import locate
    from tuneforge.models.loading import load_causal_lm, load_tokenizer
    from tuneforge.storage.files import atomic_directory

    output = Path(config.output)
    if output.exists() and any(output.iterdir()):
        raise ConflictError(f"output folder {output} is not empty", hint="choose a new folder for the adapter")
    sources = [locate(a, cache_dir=settings.model_cache_dir) for a in config.adapters]
    _check_compatible(config, sources)
    progress(ProgressEvent(ProgressKind.STAGE, f"combining {len(sources)} adapters ({config.method})"))
    model = PeftModel.from_pretrained(load_causal_lm(sources[0].base), sources[0].adapter, adapter_name="a0")
    for index, source in enumerate(sources[1:], start=1):
        model.load_adapter(source.adapter, adapter_name=f"a{index}")
    names = [f"a{i}" for i in range(len(sources))]
    density = config.density if config.density is not None else 0.5
    kwargs = {"density": density} if config.method in ("ties", "dare_linear", "dare_ties") else {}
    model.add_weighted_adapter(
        adapters=names, weights=config.weights or [1.0] * len(names), adapter_name="merged",
        combination_type=COMBINATIONS[config.method], **kwargs,
    )
    for name in names:
        model.delete_adapter(name)
    with atomic_directory(output) as staging:
        model.save_pretrained(staging, selected_adapters=["merged"])
        nested = staging / "merged"  # PEFT nests non-default adapters; flatten to a plain adapter folder
        if nested.is_dir():
            for item in nested.iterdir():
                item.rename(staging / item.name)
            nested.rmdir()
        load_tokenizer(sources[0].adapter).save_pretrained(staging)
    return output


def _check_compatible(config: MergeAdaptersConfig, sources: list) -> None:
    from tuneforge.models.inference import ADAPTER_CONFIG

    for index, source in enumerate(sources):
        if source.adapter is None:
            raise ConfigError(f"'{config.adapters[index]}' has no adapter", field=f"adapters[{index}]",
                              hint="give run directories of lora/dora runs or adapter folders")
        peft_type = json.loads((source.adapter / ADAPTER_CONFIG).read_text()).get("peft_type")
        if peft_type != "LORA":
            raise ConfigError(f"'{config.adapters[index]}' is a {peft_type} adapter; only LoRA adapters combine",
                              field=f"adapters[{index}]", hint="merge LoRA (or DoRA/QLoRA) adapters")
        if source.base != sources[0].base:
            raise ConfigError(
                f"'{config.adapters[index]}' was trained on {source.base}, not on {sources[0].base}",
                field=f"adapters[{index}]", hint="combine adapters of the same base model only",
            )
