"""Preference tuning through TRL: DPO, KTO and ORPO on any PEFT method.

DPO and KTO use the adapter-free base as their reference; ORPO needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.config.tasks import DpoTask, KtoTask, OrpoTask
from tuneforge.data.preference import load_preference_pairs
from tuneforge.models.loading import load_causal_lm
from tuneforge.data.mixing import load_mixture
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts, require_truncation, task_options

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from transformers.utils.quantization_config import QuantizationConfigMixin


def _preference_task_data(config: TrainConfig, rows: Callable[[str], list[dict[str, Any]]]) -> TaskData:
    """Train / eval datasets from ``rows(path)`` (TRL tokenizes them itself)."""
    from datasets import Dataset

    require_truncation(config)
    mixture = load_mixture(config.data, rows, seed=config.seed)
    train, evaluation = mixture.train, mixture.eval
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats={"examples": len(train), "tokens": 0, "trained_tokens": None, "truncated": 0, "dropped": 0,
               "sources": mixture.sources},
        data_format="preference",
    )


def build_preference_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Validated preference pairs in TRL's conversational form."""
    return _preference_task_data(config, load_preference_pairs)


def _unpaired(path: str) -> list[dict[str, Any]]:
    return [
        {"prompt": pair["prompt"], "completion": pair[key], "label": key == "chosen"}
        for pair in load_preference_pairs(path)
        for key in ("chosen", "rejected")
    ]


def build_kto_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Preference pairs split into TRL's unpaired form: the chosen answer is good, the rejected one bad."""
    return _preference_task_data(config, _unpaired)


def build_dpo_trainer(parts: TrainerParts) -> Trainer:
    """TRL's DPOTrainer; with a PEFT model, the reference is the same model with its adapter disabled."""
    from trl import DPOConfig, DPOTrainer

    task = task_options(parts.config, DpoTask)
    arguments = {k: v for k, v in parts.arguments.items() if k != "include_num_input_tokens_seen"}
    args = DPOConfig(
        **arguments, beta=task.beta, loss_type=[task.loss_type], max_length=parts.config.train.max_seq_length
    )
    return DPOTrainer(
        model=parts.model,
        ref_model=None,
        args=args,
        train_dataset=parts.data.train,
        eval_dataset=parts.data.eval,
        processing_class=parts.tokenizer,
        callbacks=parts.callbacks,
        optimizers=(parts.optimizer, None),
    )


def build_kto_trainer(parts: TrainerParts) -> Trainer:
    """TRL's KTOTrainer; with a PEFT model the reference is the model with its adapter disabled."""
    from trl import KTOConfig, KTOTrainer

    task = task_options(parts.config, KtoTask)
    arguments = {k: v for k, v in parts.arguments.items() if k != "include_num_input_tokens_seen"}
    args = KTOConfig(
        **arguments, beta=task.beta, desirable_weight=task.desirable_weight,
        undesirable_weight=task.undesirable_weight, max_length=parts.config.train.max_seq_length,
    )
    return KTOTrainer(
        model=parts.model, ref_model=None, args=args, train_dataset=parts.data.train,
        eval_dataset=parts.data.eval, processing_class=parts.tokenizer, callbacks=parts.callbacks,
        optimizers=(parts.optimizer, None),
    )


def build_orpo_trainer(parts: TrainerParts) -> Trainer:
    """TRL's ORPOTrainer (``trl.experimental``): SFT loss on the chosen answer plus the odds-ratio term."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    arguments = {k: v for k, v in parts.arguments.items() if k != "include_num_input_tokens_seen"}
    beta = task_options(parts.config, OrpoTask).beta
    args = ORPOConfig(**arguments, beta=beta, max_length=parts.config.train.max_seq_length)
    return ORPOTrainer(
        model=parts.model, args=args, train_dataset=parts.data.train, eval_dataset=parts.data.eval,
        processing_class=parts.tokenizer, callbacks=parts.callbacks, optimizers=(parts.optimizer, None),
    )


def _load(
    path: Path, config: TrainConfig, data: TaskData, quantization: QuantizationConfigMixin | None
) -> PreTrainedModel:
    return load_causal_lm(path, quantization_config=quantization)


DPO = TaskStrategy(build_preference_data, _load, build_dpo_trainer)
KTO = TaskStrategy(build_kto_data, _load, build_kto_trainer)
ORPO = TaskStrategy(build_preference_data, _load, build_orpo_trainer)
