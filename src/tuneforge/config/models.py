"""The training config: one validated pydantic model, the same shape as the YAML file and the API body.

The ``method`` and ``task`` fields hold the discriminated unions of the registered methods
(:mod:`tuneforge.config.methods`) and tasks (:mod:`tuneforge.config.tasks`), built by their registries.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config.base import DataFormat, StrictModel, TargetModules
from tuneforge.config.methods import METHODS, LoraMethod, MethodConfig
from tuneforge.config.tasks import TASKS, SftTask, TrainTaskConfig

__all__ = ["DataConfig", "DataFormat", "StrictModel", "TargetModules", "TrainConfig", "TrainSettings"]


class DataConfig(StrictModel):
    """Where the data is and how to read it."""

    train: str = Field(description="Training data file: .jsonl, .json, .csv or .parquet.")
    eval: str | None = Field(None, description="Evaluation data file (eval loss, early stopping).")
    format: DataFormat = Field(
        "auto",
        description="Record format: messages, alpaca, prompt_completion, text or classification; "
        "'auto' detects it from the first record's keys.",
    )
    system_prompt: str | None = Field(
        None, description="System message put before every conversation that has none."
    )
    train_on_prompt: bool = Field(
        False, description="Also compute the loss on prompt tokens (default: assistant tokens only)."
    )


class TrainSettings(StrictModel):
    """Optimization settings."""

    epochs: float = Field(3.0, gt=0, le=1000, description="Passes over the training data (up to 1000).")
    max_steps: int | None = Field(None, ge=1, le=10**8, description="Stop after this many optimizer steps (overrides epochs).")
    learning_rate: float = Field(2.0e-4, gt=0, lt=1, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, le=4096, description="Examples per device per forward pass (1-4096).")
    eval_batch_size: int | None = Field(None, ge=1, le=4096, description="Examples per eval batch (default: batch_size).")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Forward passes per optimizer step.")
    scheduler: Literal["linear", "cosine", "constant"] = Field("linear", description="Learning-rate schedule.")
    warmup: float = Field(
        0.03, ge=0, le=10**8, description="Warm-up: a fraction of the steps when below 1, else a number of steps."
    )
    weight_decay: float = Field(0.0, ge=0, le=10, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, le=10**6, description="Gradient clipping norm.")
    max_seq_length: int = Field(1024, ge=8, le=1_048_576, description="Examples longer than this are truncated (8 to 2^20).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="'auto': bf16 autocast where the CPU or GPU supports it, else fp32."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    logging_steps: int = Field(5, ge=1, le=10**8, description="Log loss and learning rate every N steps.")
    eval_steps: int | None = Field(None, ge=1, le=10**8, description="Eval every N steps (default: each epoch).")
    save_steps: int | None = Field(None, ge=1, le=10**8, description="Checkpoint every N steps (default: each epoch).")
    save_total_limit: int | None = Field(2, ge=1, le=10_000, description="Keep at most N checkpoints (null: all).")
    early_stopping_patience: int | None = Field(
        None, ge=1, le=10_000, description="Stop after N evals without a better eval loss (needs data.eval)."
    )


class TrainConfig(StrictModel):
    """A fine-tuning run: model, method, data, optimization, seed and where the outputs go."""

    examples_hint: ClassVar[str] = (
        "'tuneforge config template lora > config.yaml' writes an example with every field and its allowed values"
    )

    model: str = Field(
        description="Model reference: a builtin alias (smollm2-135m, minilm-l6), a local model "
        "directory, a .gguf file, or a hub id already in the local Hugging Face cache."
    )
    # The types and descriptions of `method` and `task` are set from their registries (below the class).
    method: MethodConfig = Field(default_factory=LoraMethod)
    task: TrainTaskConfig = Field(default_factory=SftTask)
    data: DataConfig = Field(description="Training and evaluation data.")
    train: TrainSettings = Field(default_factory=TrainSettings, description="Optimization settings.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for initialization, shuffling and dropout (0 to 2^32-1).")
    output_dir: str = Field("runs/run", description="Folder for checkpoints, the adapter or model, and reports.")

    @field_validator("method", "task", mode="before")
    @classmethod
    def _name_shorthand(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _needs_eval_data(self) -> TrainConfig:
        if self.data.eval is None:
            if self.train.early_stopping_patience is not None:
                raise ValueError("train.early_stopping_patience needs data.eval: add an eval file")
            if self.train.eval_steps is not None:
                raise ValueError("train.eval_steps needs data.eval: add an eval file or remove eval_steps")
        return self


METHODS.bind(TrainConfig, "method",
             description="Fine-tuning method: a name ({names}) or a mapping with 'name' and the method's options.")
TASKS.bind(TrainConfig, "task",
           description="What is trained: a name ({names}) or a mapping with 'name' and the task's options.")

