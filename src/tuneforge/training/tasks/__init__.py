"""Training tasks as small strategies: what data they read, which model head they load, which trainer runs.

``sft`` and ``pretrain`` use transformers' Trainer; ``dpo``, ``kto`` and ``orpo`` use TRL's trainers. Every task goes
through the same run directory, checkpoints, progress callbacks and outputs (``run_training``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuneforge.errors import ConfigError


@dataclass
class TaskData:
    """A task's prepared data.

    Attributes:
        train: Training rows (a ``datasets.Dataset``).
        eval: Evaluation rows, or ``None``.
        stats: Figures printed and stored in the summary (examples, tokens, ...).
        data_format: The record format the files were read as.
    """

    train: Any
    eval: Any | None
    stats: dict[str, Any]
    data_format: str


@dataclass
class TrainerParts:
    """Everything a task needs to build its trainer."""

    config: Any
    model: Any
    tokenizer: Any
    data: TaskData
    arguments: dict[str, Any]
    callbacks: list[Any]
    optimizer: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskStrategy:
    """One training task.

    Attributes:
        name: The ``task.name`` it serves.
        build_data: ``build_data(config, tokenizer)`` reads, validates and tokenizes the data.
        load_model: ``load_model(path, config, data, quantization_config)`` loads the model with its head.
        build_trainer: ``build_trainer(parts)`` returns a transformers / TRL trainer.
    """

    name: str
    build_data: Callable[[Any, Any], TaskData]
    load_model: Callable[[Path, Any, TaskData, Any], Any]
    build_trainer: Callable[[TrainerParts], Any]


_REGISTRY: dict[str, TaskStrategy] = {}


def peft_task_type(model: Any) -> str:
    """PEFT's task type for adapters on a loaded model, from the model's head."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "SEQ_2_SEQ_LM"
    if type(model).__name__.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    return "CAUSAL_LM"


def register_task(strategy: TaskStrategy) -> TaskStrategy:
    """Add a task to the registry under its name."""
    _REGISTRY[strategy.name] = strategy
    return strategy


def get_task(name: str) -> TaskStrategy:
    """The task registered as ``name``."""
    from tuneforge.training.tasks import classification, preference, seq2seq, sft  # noqa: F401  (they register)

    if name not in _REGISTRY:
        raise ConfigError(f"unknown task '{name}'", field="task.name", hint=f"use one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
