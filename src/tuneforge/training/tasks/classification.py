"""Sequence classification: a head on an encoder (BERT, MiniLM) or a decoder, trained on text / label."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.config.tasks import ClassificationTask
from tuneforge.data import load_examples
from tuneforge.data.formats import Example
from tuneforge.errors import ConfigError, DataError
from tuneforge.data.mixing import load_mixture
from tuneforge.training.tasks import TaskData, TaskStrategy, TrainerParts, require_truncation, task_options
from tuneforge.training.tasks.sft import plain_trainer

if TYPE_CHECKING:
    from transformers import EvalPrediction, PreTrainedModel, PreTrainedTokenizerBase, Trainer
    from transformers.utils.quantization_config import QuantizationConfigMixin


def _examples(config: TrainConfig, path: str) -> list[Example]:
    examples, fmt = load_examples(path, fmt="classification" if config.data.format == "auto" else config.data.format)
    if fmt != "classification":
        raise ConfigError(
            f"task 'classification' reads text / label records, but {path} holds {fmt} records",
            field="data.format", hint="give records with 'text' and 'label'",
        )
    return examples


def _label_names(examples: list[Example]) -> list[str]:
    return [e.messages[-1]["content"] for e in examples]


def label_set(config: TrainConfig, train_labels: list[str]) -> list[str]:
    """The labels in id order: the config's list, else the sorted labels of the training data."""
    labels = task_options(config, ClassificationTask).labels or sorted(set(train_labels))
    if len(labels) < 2:
        raise ConfigError(f"classification needs at least 2 labels, the data has {labels}", field="task.labels",
                          hint="add examples of every class")
    return labels


def build_classification_data(config: TrainConfig, tokenizer: PreTrainedTokenizerBase) -> TaskData:
    """Tokenized texts with integer labels; an unknown label names its file and line."""
    from datasets import Dataset

    require_truncation(config)
    mixture = load_mixture(config.data, lambda path: _examples(config, path), seed=config.seed)
    train_labels = _label_names(mixture.train)
    labels = label_set(config, train_labels)

    def encode(examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
        rows = []
        for example, name in zip(examples, names):
            if name not in labels:
                raise DataError(f"label '{name}' is not one of {labels}", file=example.file, line=example.line,
                                hint="fix the label, or list every label in task.labels")
            ids = tokenizer(example.messages[-2]["content"], truncation=True, max_length=config.train.max_seq_length)
            rows.append({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"],
                         "labels": labels.index(name)})
        return rows

    train = encode(mixture.train, train_labels)
    evaluation = encode(mixture.eval, _label_names(mixture.eval)) if mixture.eval else None
    counts = {name: train_labels.count(name) for name in labels}
    return TaskData(
        train=Dataset.from_list(train),
        eval=Dataset.from_list(evaluation) if evaluation else None,
        stats={"examples": len(train), "tokens": sum(len(r["input_ids"]) for r in train), "trained_tokens": None,
               "truncated": sum(len(r["input_ids"]) >= config.train.max_seq_length for r in train), "dropped": 0,
               "labels": labels, "label_counts": counts, "sources": mixture.sources},
        data_format="classification",
    )


def load_classifier(
    path: Path, config: TrainConfig, data: TaskData, quantization: QuantizationConfigMixin | None
) -> PreTrainedModel:
    """The model with a fresh classification head sized to the label set."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    labels = data.stats["labels"]
    model_config = AutoConfig.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        pad_token_id=model_config.pad_token_id if model_config.pad_token_id is not None else model_config.eos_token_id,
        quantization_config=quantization,
    )
    return model


def accuracy_metric(prediction: EvalPrediction) -> dict[str, float]:
    """Eval accuracy from the Trainer's predictions."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((logits.argmax(-1) == prediction.label_ids).mean())}


def build_classification_trainer(parts: TrainerParts) -> Trainer:
    """transformers' Trainer with dynamic padding and eval accuracy."""
    from transformers import DataCollatorWithPadding

    return plain_trainer(parts, DataCollatorWithPadding(parts.tokenizer), accuracy_metric)


CLASSIFICATION = TaskStrategy(build_classification_data, load_classifier, build_classification_trainer)
