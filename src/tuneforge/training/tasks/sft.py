"""Supervised fine-tuning (chat, instruction, prompt/completion) and continued pre-training on raw text."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.data import DatasetStats, Example, load_examples, tokenize_examples
from tuneforge.data.mixing import Mixture, load_mixture
from tuneforge.errors import ConfigError
from tuneforge.models.loading import load_causal_lm
from tuneforge.training.speed import LabelOnlyLossTrainer, LengthGroupedTrainer, lm_collator
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts

if TYPE_CHECKING:
    from transformers import DataCollator, EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from transformers.utils.quantization_config import QuantizationConfigMixin


def read_examples(config: TrainConfig, *, fmt: str) -> tuple[Mixture[Example], str]:
    """Every source of ``config.data`` read, validated, split and mixed; also the format(s) they were read as."""
    formats: list[str] = []

    def load(path: str) -> list[Example]:
        examples, data_format = load_examples(path, fmt=fmt, system_prompt=config.data.system_prompt)
        if config.task.name == "pretrain" and data_format != "text":
            raise ConfigError(
                f"task 'pretrain' trains on raw text, but {path} holds {data_format} records",
                field="task.name",
                hint="give records with a 'text' key (set data.format: text), or use task: sft",
            )
        formats.append(data_format)
        return examples

    mixture = load_mixture(config.data, load, seed=config.seed)
    return mixture, "+".join(dict.fromkeys(formats))


def tokenized_split(
    config: TrainConfig, examples: list[Example], tokenizer: PreTrainedTokenizerBase, *, name: str
) -> tuple[list[dict[str, Any]], DatasetStats]:
    """Tokenize the examples of one split (``name``: train or eval) for causal-LM training."""
    rows, stats = tokenize_examples(
        examples, tokenizer, max_seq_length=config.train.max_seq_length, train_on_prompt=config.data.train_on_prompt,
        overlong=config.data.overlong,
    )
    if not rows:
        raise ConfigError(
            f"no {name} example keeps a token to train on after data.overlong: {config.data.overlong}",
            field="train.max_seq_length",
            hint="raise train.max_seq_length",
        )
    return rows, stats


def build_lm_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Tokenized train / eval rows with loss masks."""
    from datasets import Dataset

    fmt = "text" if config.task.name == "pretrain" and config.data.format == "auto" else config.data.format
    mixture, data_format = read_examples(config, fmt=fmt)
    train, stats = tokenized_split(config, mixture.train, tokenizer, name="training")
    evaluation = None
    if mixture.eval:
        evaluation, eval_stats = tokenized_split(config, mixture.eval, tokenizer, name="eval")
        stats.add_overlong(eval_stats)  # the overlong eval records are named too
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats={**stats.as_dict(), "sources": mixture.sources},
        data_format=data_format,
    )


def load_lm(
    path: Path, config: TrainConfig, data: TaskData, quantization: QuantizationConfigMixin | None
) -> PreTrainedModel:
    """A causal LM, quantized when the method asks for it."""
    return load_causal_lm(path, quantization_config=quantization)


def plain_trainer(
    parts: TrainerParts,
    collator: DataCollator,
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
    trainer_class: Callable[..., Trainer] | None = None,
) -> Trainer:
    """transformers' Trainer (or ``trainer_class``) over a task's parts with the given collator."""
    from transformers import Trainer, TrainingArguments

    return (trainer_class or Trainer)(
        model=parts.model,
        args=TrainingArguments(**parts.arguments),
        train_dataset=parts.data.train,
        eval_dataset=parts.data.eval,
        data_collator=collator,
        processing_class=parts.tokenizer,
        compute_metrics=compute_metrics,
        callbacks=parts.callbacks,
        optimizers=(parts.optimizer, None),
    )


def build_lm_trainer(parts: TrainerParts) -> Trainer:
    """transformers' Trainer with a padding (labels -100) or flattening collator, and the label-only loss when
    ``train.speed`` asks for them."""
    speed = parts.config.train.speed
    trainer_class: Callable[..., Trainer] = partial(LengthGroupedTrainer, balance_processes=speed.balance_processes)
    if speed.label_only_loss:
        trainer_class = partial(LabelOnlyLossTrainer, loss_chunk_size=speed.loss_chunk_size,
                                balance_processes=speed.balance_processes)
    return plain_trainer(parts, lm_collator(speed, parts.tokenizer), trainer_class=trainer_class)


LANGUAGE_MODELING = TaskStrategy(build_lm_data, load_lm, build_lm_trainer)  # sft and pretrain
