"""Supervised fine-tuning (chat, instruction, prompt/completion) and continued pre-training on raw text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.data import DatasetStats, load_examples, tokenize_examples
from tuneforge.errors import ConfigError
from tuneforge.models.loading import load_causal_lm
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts

if TYPE_CHECKING:
    from transformers import DataCollator, EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from transformers.utils.quantization_config import QuantizationConfigMixin


def tokenized_split(
    config: TrainConfig, path: str, tokenizer: PreTrainedTokenizerBase, *, fmt: str
) -> tuple[list[dict[str, Any]], DatasetStats, str]:
    """Read, validate and tokenize one data file for causal-LM training."""
    examples, data_format = load_examples(path, fmt=fmt, system_prompt=config.data.system_prompt)
    if config.task.name == "pretrain" and data_format != "text":
        raise ConfigError(
            f"task 'pretrain' trains on raw text, but {path} holds {data_format} records",
            field="task.name",
            hint="give records with a 'text' key (set data.format: text), or use task: sft",
        )
    rows, stats = tokenize_examples(
        examples, tokenizer, max_seq_length=config.train.max_seq_length, train_on_prompt=config.data.train_on_prompt
    )
    if not rows:
        raise ConfigError(
            f"no example of {path} keeps a token to train on after truncation",
            field="train.max_seq_length",
            hint="raise train.max_seq_length",
        )
    return rows, stats, data_format


def build_lm_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Tokenized train / eval rows with loss masks."""
    from datasets import Dataset

    fmt = "text" if config.task.name == "pretrain" and config.data.format == "auto" else config.data.format
    train, stats, data_format = tokenized_split(config, config.data.train, tokenizer, fmt=fmt)
    evaluation = tokenized_split(config, config.data.eval, tokenizer, fmt=fmt)[0] if config.data.eval else None
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats=stats.as_dict(),
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
) -> Trainer:
    """transformers' Trainer over a task's parts with the given collator."""
    from transformers import Trainer, TrainingArguments

    return Trainer(
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
    """transformers' Trainer with a padding collator that pads labels with -100."""
    from transformers import DataCollatorForSeq2Seq

    return plain_trainer(parts, DataCollatorForSeq2Seq(parts.tokenizer, padding=True, label_pad_token_id=-100))


LANGUAGE_MODELING = TaskStrategy(build_lm_data, load_lm, build_lm_trainer)  # sft and pretrain
