"""Several training sources in one run: weighted mixing and a seeded validation split.

What a weight means: the probability that the next training example is drawn from that source (weights are
normalized to sum 1). The mix is datasets' ``interleave_datasets`` with those probabilities, the run's seed and
``stopping_strategy="all_exhausted"``: drawing goes on until every source has been drawn in full at least once, so
a source whose share is larger than its size is repeated and no record of any source is left out. Without weights
the sources are concatenated. ``data.eval: {split: F}`` holds out the fraction F of each training source (seeded,
at least one record) before mixing, so no held-out record is trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tuneforge.config.data import DataSource
from tuneforge.config.models import DataConfig
from tuneforge.errors import ConfigError

T = TypeVar("T")


@dataclass
class Mixture(Generic[T]):
    """The items of a run's training and evaluation data, and what each source gave.

    Attributes:
        train: Training items in training order (mixed, or concatenated).
        eval: Evaluation items, or ``None`` without eval data.
        sources: One entry per training source: ``source``, ``records``, ``held_out``, ``weight``, ``drawn``.
    """

    train: list[T]
    eval: list[T] | None
    sources: list[dict[str, Any]] = field(default_factory=list)


def load_mixture(data: DataConfig, load: Callable[[str], list[T]], *, seed: int) -> Mixture[T]:
    """Read every source of ``data`` with ``load(path)``, hold out the eval split, and mix the training sources.

    Args:
        data: The config's ``data`` block; dataset references must already be resolved to paths (by services).
        load: Reads and validates one file into items (examples, pairs, ...).
        seed: The run's seed (split and mixing order).

    Raises:
        ConfigError: A dataset reference without a path, or a source too small for the eval split.
    """
    parts, evaluation, report = [], [], []
    for source in data.train_sources():
        items = load(source_path(source))
        train, held_out = _hold_out(items, data.eval_split, seed=seed, source=source)
        parts.append(train)
        evaluation.extend(held_out)
        report.append({"source": source.label, "records": len(items), "held_out": len(held_out),
                       "weight": source.weight})
    for source in data.eval_sources():
        evaluation.extend(load(source_path(source)))
    weights = [entry["weight"] for entry in report]
    order = (mix_order([len(p) for p in parts], weights=weights, seed=seed) if None not in weights
             else [(n, i) for n, p in enumerate(parts) for i in range(len(p))])
    train = [parts[n][i] for n, i in order]
    for n, entry in enumerate(report):
        entry["drawn"] = sum(1 for part, _ in order if part == n)
    has_eval = data.eval is not None
    return Mixture(train=train, eval=evaluation if has_eval else None, sources=report)


def source_path(source: DataSource) -> str:
    """The file of a source; a platform dataset must have been resolved to one first.

    Raises:
        ConfigError: ``{dataset: ...}`` without ``path`` (nothing resolved it).
    """
    if source.path is None:
        raise ConfigError(
            f"data entry {{dataset: {source.dataset}}}: dataset references need the platform's dataset registry "
            "to resolve them to a file",
            field="data.train", hint="run the config as a platform job, or give the file: {path: FILE}",
        )
    return source.path


def mix_order(sizes: list[int], *, weights: list[float], seed: int) -> list[tuple[int, int]]:
    """``(source, index)`` pairs drawn with probabilities ``weights`` (normalized) until each source is used in full.

    datasets' ``interleave_datasets(..., stopping_strategy="all_exhausted")`` over index columns: seeded, so a run
    and its resume see the same order.
    """
    from datasets import Dataset, interleave_datasets

    total = sum(weights)
    columns = [Dataset.from_dict({"part": [n] * size, "index": list(range(size))}) for n, size in enumerate(sizes)]
    mixed = interleave_datasets(columns, probabilities=[w / total for w in weights], seed=seed,
                                stopping_strategy="all_exhausted")
    return list(zip(mixed["part"], mixed["index"]))


def _hold_out(items: list[T], fraction: float | None, *, seed: int, source: DataSource) -> tuple[list[T], list[T]]:
    """Split ``items`` into (train, held out) with datasets' seeded ``train_test_split``."""
    if not fraction:
        return items, []
    if len(items) < 2:
        raise ConfigError(f"data source {source.label} has {len(items)} record: too few to hold out an eval split",
                          field="data.eval.split", hint="give an eval file (data.eval: FILE) or more records")
    from datasets import Dataset

    split = Dataset.from_dict({"index": list(range(len(items)))}).train_test_split(test_size=fraction, seed=seed)
    return [items[i] for i in split["train"]["index"]], [items[i] for i in split["test"]["index"]]


def source_lines(sources: list[dict[str, Any]], *, split: float | None = None) -> list[str]:
    """One line per training source (``Mixture.sources``) when there are several or an eval split; else none."""
    if len(sources) < 2 and not split:
        return []
    total = sum(entry["drawn"] for entry in sources) or 1
    lines = []
    for entry in sources:
        weight = f", weight {entry['weight']:g}" if entry.get("weight") is not None else ""
        held = f", {entry['held_out']} held out for eval" if entry.get("held_out") else ""
        lines.append(f"source {entry['source']}: {entry['records']} records{held}{weight}, {entry['drawn']} drawn "
                     f"({entry['drawn'] / total:.0%} of the training set)")
    return lines
