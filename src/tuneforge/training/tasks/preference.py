"""Preference tuning through TRL: DPO, KTO and ORPO on any PEFT method.

DPO and KTO use the adapter-free base as their reference; ORPO needs none.
"""

from __future__ import annotations

from typing import Any

from tuneforge.data.preference import load_preference_pairs
from tuneforge.models.loading import load_causal_lm
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts, register_task


def _preference_task_data(config: Any, rows: Any) -> TaskData:
    """Train / eval datasets from ``rows(path)`` (TRL tokenizes them itself)."""
    from datasets import Dataset

    train = rows(config.data.train)
    evaluation = rows(config.data.eval) if config.data.eval else None
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats={"examples": len(train), "tokens": 0, "trained_tokens": 0, "truncated": 0, "dropped": 0},
        data_format="preference",
    )


def build_preference_data(config: Any, tokenizer: Any) -> TaskData:
    """Validated preference pairs in TRL's conversational form."""
    return _preference_task_data(config, load_preference_pairs)


def _unpaired(path: str) -> list[dict]:
    return [
        {"prompt": pair["prompt"], "completion": pair[key], "label": key == "chosen"}
        for pair in load_preference_pairs(path)
        for key in ("chosen", "rejected")
    ]


def build_kto_data(config: Any, tokenizer: Any) -> TaskData:
    """Preference pairs split into TRL's unpaired form: the chosen answer is good, the rejected one bad."""
    return _preference_task_data(config, _unpaired)


def build_dpo_trainer(parts: TrainerParts) -> Any:
    """TRL's DPOTrainer; with a PEFT model, the reference is the same model with its adapter disabled."""
    from trl import DPOConfig, DPOTrainer

    task = parts.config.task
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


def build_kto_trainer(parts: TrainerParts) -> Any:
    """TRL's KTOTrainer; with a PEFT model the reference is the model with its adapter disabled."""
    from trl import KTOConfig, KTOTrainer

    task = parts.config.task
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


def build_orpo_trainer(parts: TrainerParts) -> Any:
    """TRL's ORPOTrainer (``trl.experimental``): SFT loss on the chosen answer plus the odds-ratio term."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    arguments = {k: v for k, v in parts.arguments.items() if k != "include_num_input_tokens_seen"}
    args = ORPOConfig(**arguments, beta=parts.config.task.beta, max_length=parts.config.train.max_seq_length)
    return ORPOTrainer(
        model=parts.model, args=args, train_dataset=parts.data.train, eval_dataset=parts.data.eval,
        processing_class=parts.tokenizer, callbacks=parts.callbacks, optimizers=(parts.optimizer, None),
    )


def _load(path: Any, config: Any, data: TaskData, quantization: Any) -> Any:
    return load_causal_lm(path, quantization_config=quantization)


register_task(TaskStrategy("dpo", build_preference_data, _load, build_dpo_trainer))
register_task(TaskStrategy("kto", build_kto_data, _load, build_kto_trainer))
register_task(TaskStrategy("orpo", build_preference_data, _load, build_orpo_trainer))
