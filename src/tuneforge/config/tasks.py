"""Training tasks: each one's config class, registered with its strategy (see :mod:`tuneforge.config.registry`).

A new task is one decorated class here and one strategy under ``tuneforge.training.tasks``; the ``task`` union of
:class:`~tuneforge.config.models.TrainConfig` and the names in help texts, errors and templates follow from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.base import NamedConfig
from tuneforge.config.registry import Registry



class TrainTaskConfig(NamedConfig):
    """Base of every training task's config class."""


TASKS: Registry[TrainTaskConfig] = Registry("task", field="task.name")


def task_names() -> tuple[str, ...]:
    """The registered task names, in registration order."""
    return TASKS.names()


@TASKS.register(strategy="tuneforge.training.tasks.sft:LANGUAGE_MODELING")
class SftTask(TrainTaskConfig):
    """Supervised fine-tuning on chat / instruction data (loss on the answers)."""

    name: Literal["sft"] = Field("sft", description="Task name.")


@TASKS.register(strategy="tuneforge.training.tasks.sft:LANGUAGE_MODELING")
class PretrainTask(TrainTaskConfig):
    """Continued pre-training on raw text (``text`` records, loss on every token)."""

    name: Literal["pretrain"] = Field("pretrain", description="Task name.")


@TASKS.register(strategy="tuneforge.training.tasks.preference:DPO")
class DpoTask(TrainTaskConfig):
    """Direct preference optimization (TRL) on chosen / rejected pairs."""

    name: Literal["dpo"] = Field("dpo", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL tie to the reference model.")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field("sigmoid", description="DPO loss variant.")


@TASKS.register(strategy="tuneforge.training.tasks.preference:KTO")
class KtoTask(TrainTaskConfig):
    """Kahneman-Tversky optimization (TRL): learns from answers labelled good or bad; pairs are split."""

    name: Literal["kto"] = Field("kto", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Strength of the KL tie to the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of good answers.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of bad answers.")


@TASKS.register(strategy="tuneforge.training.tasks.preference:ORPO")
class OrpoTask(TrainTaskConfig):
    """Odds-ratio preference optimization (TRL): SFT on the chosen answer plus an odds-ratio penalty on the
    rejected one, in one stage and without a reference model."""

    name: Literal["orpo"] = Field("orpo", description="Task name.")
    beta: float = Field(0.1, gt=0, description="Weight of the odds-ratio term against the SFT loss (lambda).")


@TASKS.register(strategy="tuneforge.training.tasks.classification:CLASSIFICATION")
class ClassificationTask(TrainTaskConfig):
    """Sequence classification: a classification head on an encoder or decoder (``text`` / ``label`` data)."""

    name: Literal["classification"] = Field("classification", description="Task name.")
    labels: list[str] | None = Field(
        None, min_length=2, description="The label set in order (default: the sorted labels of the training data)."
    )


@TASKS.register(strategy="tuneforge.training.tasks.seq2seq:SEQ2SEQ")
class Seq2SeqTask(TrainTaskConfig):
    """Sequence-to-sequence training of an encoder-decoder (t5, bart): summarization, translation, ..."""

    name: Literal["seq2seq"] = Field("seq2seq", description="Task name.")
    max_target_length: int = Field(128, ge=1, description="Targets longer than this are truncated.")


@TASKS.register(strategy="tuneforge.training.tasks.seq2seq:SEQ2SEQ")
class QaTask(TrainTaskConfig):
    """Generative question answering over a context (``context`` / ``question`` / ``answer`` data)."""

    name: Literal["qa"] = Field("qa", description="Task name.")
    max_target_length: int = Field(64, ge=1, description="Answers longer than this are truncated (encoder-decoders).")
