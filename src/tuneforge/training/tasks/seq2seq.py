"""Encoder-decoder training (t5, bart): summarization, translation, and generative QA.

``qa`` reads context / question / answer records; on an encoder-decoder it trains here, on a decoder
it trains as supervised fine-tuning (the prompt is the context and the question).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.config.tasks import QaTask, Seq2SeqTask
from tuneforge.data import load_examples
from tuneforge.errors import ConfigError
from tuneforge.data.mixing import load_mixture
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts, require_truncation, task_options
from tuneforge.training.tasks.sft import build_lm_data, build_lm_trainer, load_lm

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from transformers.utils.quantization_config import QuantizationConfigMixin


def is_encoder_decoder(path: str | Path) -> bool:
    """Whether the model at ``path`` is an encoder-decoder."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False))


def _require_encoder_decoder(config: TrainConfig, path: str | Path) -> None:
    if not is_encoder_decoder(path):
        raise ConfigError(
            f"task '{config.task.name}' needs an encoder-decoder model (t5, bart), but {config.model} is decoder-only",
            field="task.name",
            hint="use task: sft with prompt / completion data for a decoder-only model, or pick a t5 / bart model",
        )


def _pairs(config: TrainConfig, path: str, fmt: str) -> tuple[list[tuple[str, str]], str]:
    examples, data_format = load_examples(path, fmt=fmt)
    if data_format in ("text", "classification"):
        raise ConfigError(f"task '{config.task.name}' needs source / target pairs, but {path} holds {data_format} "
                          "records", field="data.format", hint="give prompt / completion records")
    return [("\n".join(m["content"] for m in e.messages[:-1]), e.messages[-1]["content"]) for e in examples], data_format


def build_seq2seq_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Tokenized source texts with tokenized targets as labels."""
    from datasets import Dataset

    if config.task.name == "qa" and not is_encoder_decoder(tokenizer.name_or_path):
        return build_lm_data(config, tokenizer)
    _require_encoder_decoder(config, tokenizer.name_or_path)
    fmt = "qa" if config.task.name == "qa" and config.data.format == "auto" else config.data.format
    limit, target_limit = config.train.max_seq_length, task_options(config, (Seq2SeqTask, QaTask)).max_target_length

    require_truncation(config)
    formats: list[str] = []

    def load(path: str) -> list[tuple[str, str]]:
        pairs, data_format = _pairs(config, path, fmt)
        formats.append(data_format)
        return pairs

    def encode(pairs: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], int]:
        rows, truncated = [], 0
        for source, target in pairs:
            ids = tokenizer(source, truncation=True, max_length=limit)
            labels = tokenizer(text_target=target, truncation=True, max_length=target_limit)["input_ids"]
            if tokenizer.eos_token_id is not None and labels[-1:] != [tokenizer.eos_token_id]:
                labels = labels[: target_limit - 1] + [tokenizer.eos_token_id]  # so generation learns to stop
            truncated += len(ids["input_ids"]) >= limit or len(labels) >= target_limit
            rows.append({**ids, "labels": labels})
        return rows, truncated

    mixture = load_mixture(config.data, load, seed=config.seed)
    train, truncated = encode(mixture.train)
    evaluation = encode(mixture.eval)[0] if mixture.eval else None
    data_format = "+".join(dict.fromkeys(formats))
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats={"examples": len(train), "tokens": sum(len(r["input_ids"]) + len(r["labels"]) for r in train),
               "trained_tokens": sum(len(r["labels"]) for r in train), "truncated": truncated, "dropped": 0,
               "sources": mixture.sources},
        data_format=data_format,
    )


def load_seq2seq(
    path: Path, config: TrainConfig, data: TaskData, quantization: QuantizationConfigMixin | None
) -> PreTrainedModel:
    """An encoder-decoder LM (or a causal LM for qa on a decoder)."""
    from transformers import AutoModelForSeq2SeqLM

    if config.task.name == "qa" and not is_encoder_decoder(path):
        return load_lm(path, config, data, quantization)
    _require_encoder_decoder(config, path)
    return AutoModelForSeq2SeqLM.from_pretrained(path, quantization_config=quantization)


def build_seq2seq_trainer(parts: TrainerParts) -> Trainer:
    """transformers' Seq2SeqTrainer with the encoder-decoder collator."""
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    if not getattr(parts.model.config, "is_encoder_decoder", False):
        return build_lm_trainer(parts)
    return Seq2SeqTrainer(
        model=parts.model,
        args=Seq2SeqTrainingArguments(**parts.arguments),
        train_dataset=parts.data.train,
        eval_dataset=parts.data.eval,
        data_collator=DataCollatorForSeq2Seq(parts.tokenizer, model=parts.model, label_pad_token_id=-100),
        processing_class=parts.tokenizer,
        callbacks=parts.callbacks,
        optimizers=(parts.optimizer, None),
    )


SEQ2SEQ = TaskStrategy(build_seq2seq_data, load_seq2seq, build_seq2seq_trainer)  # seq2seq and qa
