"""The entries of ``data.train`` / ``data.eval``: files or platform datasets with mixing weights, or a split.

A plain string stays the shorthand for one file: ``train: data/train.jsonl`` is ``train: [{path: data/train.jsonl}]``.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from tuneforge.config.base import StrictModel

OverlongPolicy = Literal["truncate", "drop", "error"]

# Chat templates that tuneforge ships (tuneforge.data.templates); any other value must be a .jinja file.
CHAT_TEMPLATE_NAMES = ("auto", "chatml", "llama3", "mistral", "gemma", "phi3", "zephyr")


class DataSource(StrictModel):
    """One training or evaluation source: a data file, or a versioned dataset of the platform."""

    path: str | None = Field(
        None, description="Data file (.jsonl, .json, .csv, .parquet). With 'dataset', the file the platform "
        "resolved it to (filled in by the platform; a run folder's config.yaml re-runs without the platform)."
    )
    dataset: str | None = Field(
        None, description="A dataset version of the platform, 'name:version' (e.g. support:3); needs the platform."
    )
    since: int | None = Field(
        None, ge=1, description="With 'dataset': only the records added after this version (incremental training)."
    )
    replay: float | None = Field(
        None, ge=0, le=1,
        description="With 'since': the fraction of older records mixed back in, against forgetting.",
    )
    weight: float | None = Field(
        None, gt=0,
        description="Mixing weight (train only): the probability that the next example is drawn from this source; "
        "weights are normalized to sum 1. Without weights the sources are concatenated.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSource:
        if self.path is None and self.dataset is None:
            raise ValueError("give 'path' (a data file) or 'dataset' (name:version of the platform)")
        if self.dataset is None and (self.since is not None or self.replay is not None):
            raise ValueError("'since' and 'replay' apply to a 'dataset' entry only")
        if self.replay is not None and self.since is None:
            raise ValueError("'replay' needs 'since' (the version whose newer records are trained on)")
        return self

    @property
    def label(self) -> str:
        """How messages name the source: its dataset reference, else its path."""
        return self.dataset or self.path or "?"


class EvalSplit(StrictModel):
    """A validation split carved from the training data with the run's seed."""

    split: float = Field(
        gt=0, lt=0.5, description="Fraction of each training source held out for evaluation (e.g. 0.05)."
    )


def _data_shape(value: object) -> str:
    """The branch of a data union a value takes, so that only that branch's errors are reported."""
    if isinstance(value, str):
        return "<file>"
    if isinstance(value, (dict, EvalSplit)) and "split" in (value if isinstance(value, dict) else {"split": 0}):
        return "<split>"
    return "<sources>"


# The tags start with '<' so that the config loader leaves them out of field paths and line lookups.
TrainData = Annotated[
    Union[Annotated[str, Tag("<file>")], Annotated[list[DataSource], Tag("<sources>")]], Discriminator(_data_shape)
]
EvalData = Annotated[
    Union[Annotated[str, Tag("<file>")], Annotated[list[DataSource], Tag("<sources>")], Annotated[EvalSplit, Tag("<split>")]],
    Discriminator(_data_shape),
]


def as_sources(value: str | list[DataSource] | None) -> list[DataSource]:
    """``data.train`` / ``data.eval`` as a list of sources (a plain path is one source)."""
    if value is None:
        return []
    return [DataSource(path=value)] if isinstance(value, str) else list(value)
