"""The training config: one validated pydantic model, the same shape as the YAML file and the API body.

The ``method`` and ``task`` fields hold the discriminated unions of the registered methods
(:mod:`tuneforge.config.methods`) and tasks (:mod:`tuneforge.config.tasks`), built by their registries.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config.base import DataFormat, StrictModel, TargetModules
from tuneforge.config.data import (
    CHAT_TEMPLATE_NAMES, DataSource, EvalData, EvalSplit, OverlongPolicy, TrainData, as_sources,
)
from tuneforge.config.methods import METHODS, LoraMethod, MethodConfig
from tuneforge.config.monitoring import AlertThresholds, AnomalyAction, ReportTarget
from tuneforge.config.speed import SpeedSettings
from tuneforge.config.tasks import TASKS, SftTask, TrainTaskConfig
from tuneforge.errors import suggest

Optimizer = Literal[
    "auto", "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adamw_bnb_8bit", "paged_adamw_8bit", "lion"
]

__all__ = [
    "DataConfig", "DataFormat", "DataSource", "EvalSplit", "StrictModel", "TargetModules", "TrainConfig",
    "TrainSettings",
]


class DataConfig(StrictModel):
    """Where the data is and how to read it."""

    train: TrainData = Field(
        description="Training data: a file (.jsonl, .json, .csv, .parquet), or a list of sources "
        "({path: FILE} or {dataset: NAME:VERSION}, each with an optional mixing weight)."
    )
    eval: EvalData | None = Field(
        None, description="Evaluation data (eval loss, early stopping): a file, a list of sources, or "
        "{split: 0.05} to hold out that fraction of each training source (seeded)."
    )
    format: DataFormat = Field(
        "auto",
        description="Record format: messages, sharegpt, alpaca, prompt_completion, qa, text or classification; "
        "'auto' detects it from the first record's keys.",
    )
    system_prompt: str | None = Field(
        None, description="System message put before every conversation that has none."
    )
    train_on_prompt: bool = Field(
        False, description="Also compute the loss on prompt tokens (default: assistant tokens only)."
    )
    chat_template: str = Field(
        "auto",
        description=f"Chat template: 'auto' (the model's own, else chatml), one of "
        f"{', '.join(CHAT_TEMPLATE_NAMES[1:])}, or a .jinja file. It is saved with the adapter and used by "
        "eval, generate and serving.",
    )
    overlong: OverlongPolicy = Field(
        "truncate",
        description="Records longer than train.max_seq_length: 'truncate' (default; a record left with no "
        "token to train on is dropped), 'drop' them, or stop with an 'error' naming them.",
    )

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _one_mapping(cls, value: object) -> object:
        if isinstance(value, dict) and "split" not in value:
            return [value]  # a single source written as a mapping
        if isinstance(value, list):  # a plain path in a list of sources
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("train")
    @classmethod
    def _weights_all_or_none(cls, value: str | list[DataSource]) -> str | list[DataSource]:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one training source")
            weighted = [source.weight is not None for source in value]
            if any(weighted) and not all(weighted):
                raise ValueError("give a weight to every data.train entry or to none (none: concatenate them)")
        return value

    @field_validator("eval")
    @classmethod
    def _eval_unweighted(cls, value: object) -> object:
        if isinstance(value, list) and any(source.weight is not None for source in value):
            raise ValueError("weights apply to data.train only: eval sources are concatenated")
        return value

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        if value not in CHAT_TEMPLATE_NAMES and not value.endswith(".jinja"):
            hint = suggest(value, CHAT_TEMPLATE_NAMES)
            raise ValueError(
                f"unknown chat template {value!r}; use one of {', '.join(CHAT_TEMPLATE_NAMES)} or a .jinja file"
                + (f" ({hint})" if hint else "")
            )
        return value

    def train_sources(self) -> list[DataSource]:
        """The training sources as a list (a plain path is one source)."""
        return as_sources(self.train)

    def eval_sources(self) -> list[DataSource]:
        """The evaluation sources as a list; empty with no eval data or with ``{split: ...}``."""
        return [] if isinstance(self.eval, EvalSplit) else as_sources(self.eval)

    @property
    def eval_split(self) -> float | None:
        """The fraction held out of the training data, when ``eval`` is ``{split: ...}``."""
        return self.eval.split if isinstance(self.eval, EvalSplit) else None


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
    max_seq_length: int = Field(1024, ge=8, le=1_048_576, description="Longest example in tokens (8 to 2^20); longer ones follow data.overlong.")
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
    optimizer: Optimizer = Field(
        "auto",
        description="Optimizer (transformers' optim): 'auto' (transformers' default, fused AdamW), adamw_torch, "
        "adamw_torch_fused, adafactor, sgd, adamw_bnb_8bit / paged_adamw_8bit / lion (need bitsandbytes).",
    )
    neftune_alpha: float | None = Field(
        None, gt=0, description="NEFTune: noise on the input embeddings while training (5 is typical; null: off)."
    )
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing factor of the loss (0: off).")
    on_anomaly: AnomalyAction = Field(
        "warn", description="What an anomaly alert (NaN loss, loss spike, rising eval loss, gradient explosion, "
        "throughput collapse) does: 'warn' (an event, a metric, the webhook), 'pause' (checkpoint and pause the "
        "job; a CLI run stops resumable), 'stop' (end the run with an error).")
    alerts: AlertThresholds = Field(default_factory=AlertThresholds, description="Thresholds of the anomaly alerts.")
    report_to: list[ReportTarget] = Field(
        default_factory=list, description="Also log to these trackers through the Trainer's integrations: "
        "tensorboard (event files in the run folder's tensorboard/), mlflow (see mlflow_tracking_uri).")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI for report_to: [mlflow] (default: a file store mlruns/ in the run "
        "folder).")
    distributed: Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"] = Field(
        "ddp",
        description="How several processes (tuneforge train --nproc N) share the work: ddp (default: each holds the "
        "model, gradients averaged), fsdp (parameters, gradients and optimizer state sharded), deepspeed_zero2 / "
        "deepspeed_zero3 (DeepSpeed ZeRO; the deepspeed extra). All run on GPUs and on CPU (gloo). Ignored with one "
        "process.",
    )
    speed: SpeedSettings = Field(default_factory=SpeedSettings, description="Speed and memory switches.")


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
        if getattr(self.method, "loraplus_lr_ratio", None) and self.train.optimizer != "auto":
            raise ValueError("method.loraplus_lr_ratio builds its own AdamW: remove train.optimizer or loraplus_lr_ratio")
        return self


METHODS.bind(TrainConfig, "method",
             description="Fine-tuning method: a name ({names}) or a mapping with 'name' and the method's options.")
TASKS.bind(TrainConfig, "task",
           description="What is trained: a name ({names}) or a mapping with 'name' and the task's options.")

