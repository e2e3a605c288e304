"""A short fine-tune after pruning (LoRA, merged afterwards, or full), through the one training entry point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import RecoverySettings
from tuneforge.compression.stage import StepContext, save_transformers
from tuneforge.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


def recover(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: RecoverySettings, context: StepContext
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Fine-tune ``model`` on ``settings.data`` and return the tuned model (LoRA merged) with the run's losses."""
    from tuneforge.config import TrainConfig
    from tuneforge.models.inference import load_for_inference
    from tuneforge.training.run import run_training

    context.progress(ProgressEvent(ProgressKind.STAGE, f"recovery fine-tune ({settings.method})"))
    source = save_transformers(model, tokenizer, context.scratch / "pruned")
    method: dict[str, Any] = {"name": "lora", "r": 16, "alpha": 32} if settings.method == "lora" else {"name": "full"}
    config = TrainConfig(
        model=str(source), method=method, data={"train": settings.data},
        train={"epochs": settings.epochs, "learning_rate": settings.learning_rate, "batch_size": settings.batch_size,
               "max_seq_length": settings.max_seq_length, "save_total_limit": 1},
        seed=context.seed, output_dir=str(context.scratch / "recovery-run"),
    )
    result = run_training(config, settings=context.settings, overwrite=True, progress=context.progress)
    tuned, _, _ = load_for_inference(str(result.output_dir), cache_dir=context.settings.model_cache_dir, merge=True)
    tuned.config.use_cache = True  # training turns the KV cache off; generation needs it back
    details = {"method": settings.method, "train_loss": result.summary["train_loss"],
               "steps": result.summary["global_step"]}
    return tuned, details
