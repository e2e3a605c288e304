"""Training tasks as small strategies: what data they read, which model head they load, which trainer runs.

A task's config class is registered in :mod:`tuneforge.config.tasks` together with the import path of its
strategy here (``@TASKS.register(strategy="tuneforge.training.tasks.sft:LANGUAGE_MODELING")``).

``sft`` and ``pretrain`` use transformers' Trainer; ``dpo``, ``kto`` and ``orpo`` use TRL's trainers. Every task goes
through the same run directory, checkpoints, progress callbacks and outputs (``run_training``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar, Union

from tuneforge.config.models import TrainConfig
from tuneforge.config.tasks import TASKS, TrainTaskConfig
from tuneforge.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback
    from transformers.utils.quantization_config import QuantizationConfigMixin

    TrainableModel = Union[PreTrainedModel, PeftModel]


@dataclass
class TaskData:
    """A task's prepared data.

    Attributes:
        train: Training rows (a ``datasets.Dataset``).
        eval: Evaluation rows, or ``None``.
        stats: Figures printed and stored in the summary (examples, tokens, ...).
        data_format: The record format the files were read as.
    """

    train: Dataset
    eval: Dataset | None
    stats: dict[str, Any]
    data_format: str


@dataclass
class TrainerParts:
    """Everything a task needs to build its trainer."""

    config: TrainConfig
    model: TrainableModel
    tokenizer: PreTrainedTokenizerBase
    data: TaskData
    arguments: dict[str, Any]
    callbacks: list[TrainerCallback]
    optimizer: torch.optim.Optimizer | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStrategy:
    """One training task.

    Attributes:
        build_data: ``build_data(config, tokenizer)`` reads, validates and tokenizes the data.
        load_model: ``load_model(path, config, data, quantization_config)`` loads the model with its head.
        build_trainer: ``build_trainer(parts)`` returns a transformers / TRL trainer.
    """

    build_data: Callable[[TrainConfig, PreTrainedTokenizerBase], TaskData]
    load_model: Callable[[Path, TrainConfig, TaskData, QuantizationConfigMixin | None], PreTrainedModel]
    build_trainer: Callable[[TrainerParts], Trainer]


def peft_task_type(model: PreTrainedModel) -> str:
    """PEFT's task type for adapters on a loaded model, from the model's head."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    if type(model).__name__.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return "CAUSAL_LM"


T = TypeVar("T", bound=TrainTaskConfig)


def task_options(config: TrainConfig, kind: type[T] | tuple[type[T], ...]) -> T:
    """``config.task`` as the task's own config class (a strategy serves the classes it is registered with)."""
    task = config.task
    if not isinstance(task, kind):
        raise TypeError(f"task '{task.name}' reached a strategy for {kind}: check its registration in config.tasks")
    return task


def require_truncation(config: TrainConfig) -> None:
    """Tasks that cut long inputs themselves (classification, seq2seq, preference) take ``data.overlong: truncate``.

    Raises:
        ConfigError: ``data.overlong`` is ``drop`` or ``error`` for such a task.
    """
    if config.data.overlong != "truncate":
        raise ConfigError(
            f"data.overlong: {config.data.overlong} applies to the sft and pretrain tasks; task "
            f"'{config.task.name}' truncates long inputs",
            field="data.overlong", hint="remove data.overlong (the default is truncate)",
        )


def get_task(name: str) -> TaskStrategy:
    """The strategy of the task registered as ``name``.

    Raises:
        ConfigError: No task is registered as ``name`` (the hint names a close one, or all).
    """
    return TASKS.strategy(name)
