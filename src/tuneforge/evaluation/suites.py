"""Evaluation suites: a YAML file of tasks (data, format, metrics, limits), and the built-in generated tasks.

.. code-block:: yaml

    name: release-checks
    tasks:
      - builtin: profile-extraction          # generated, needs no download
      - data: data/support_test.jsonl        # relative to this file
        metrics: [exact_match, chrf]
        limit: 200
        max_new_tokens: 128
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tuneforge.config import load_config, validate_config
from tuneforge.config.models import DataFormat, StrictModel
from tuneforge.data import load_examples, normalize
from tuneforge.data.formats import Example
from tuneforge.data.readers import Record
from tuneforge.errors import ConfigError, suggest
from tuneforge.evaluation.metrics import DEFAULT_METRICS, METRICS, task_type_for_format
from tuneforge.evaluation.tasks import profile_extraction

TaskType = Literal["generation", "qa", "classification", "language_modeling"]


@dataclass(frozen=True)
class BuiltinTask:
    """A generated task: records in a data format, its task type, metrics and answer length."""

    description: str
    generate: Callable[[], list[dict]]
    task_type: str
    metrics: tuple[str, ...]
    max_new_tokens: int


def _quickstart_test() -> list[dict]:
    # The quickstart's test split: the same sizes and seed as services.quickstart.write_task_data.
    return profile_extraction(n_train=240, n_eval=40, n_test=60, seed=0).test


def _arithmetic(n: int = 60, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        op, value = rng.choice([("plus", a + b), ("minus", a - b), ("times", a * b)])
        question = f"What is {a} {op} {b}? Answer with the number only."
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": str(value)}]})
    return rows


_GOOD = "great wonderful excellent delightful superb lovely fantastic pleasant".split()
_BAD = "terrible awful dreadful boring broken disappointing horrible useless".split()
_THINGS = "film meal hotel phone book concert service laptop game course".split()
_REVIEWS = ("The {thing} was {word}.", "What a {word} {thing}!", "I found the {thing} {word}.",
            "Honestly, a {word} {thing}.", "Our {thing} turned out {word}.")


def _sentiment(n: int = 60, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ("positive", "negative")[i % 2]
        review = rng.choice(_REVIEWS).format(thing=rng.choice(_THINGS), word=rng.choice(_GOOD if i % 2 == 0 else _BAD))
        prompt = f"Is the sentiment of this review positive or negative? Answer with one word.\nReview: {review}"
        rows.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": label}]})
    return rows


BUILTIN_TASKS: dict[str, BuiltinTask] = {
    "profile-extraction": BuiltinTask(
        "the quickstart's task: a profile sentence to a key=value line (60 test examples)",
        _quickstart_test, "generation", ("exact_match", "token_f1", "chrf"), 48),
    "arithmetic": BuiltinTask("two-number arithmetic, answer is the number (60)", _arithmetic, "qa",
                              ("exact_match", "token_f1"), 8),
    "sentiment": BuiltinTask("review sentiment, positive or negative (60)", _sentiment, "classification",
                             ("accuracy", "macro_f1"), 4),
}


def _unknown_metric(name: str) -> str:
    guess = suggest(name, METRICS)
    return f"unknown metric '{name}' ({guess + ' ' if guess else ''}known: {', '.join(METRICS)})"


class TaskConfig(StrictModel):
    """One task of a suite: a data file or a built-in task, and how to score it."""

    name: str | None = Field(None, description="Name in reports (default: the built-in's name or the data file's "
                             "stem).")
    data: str | None = Field(None, description="Test data file (.jsonl, .json, .csv, .parquet); a relative path is "
                             "relative to the suite file. The last assistant message (or output / completion / "
                             "label) is the reference.")
    builtin: str | None = Field(None, description=f"A built-in generated task: {', '.join(BUILTIN_TASKS)}.")
    format: DataFormat = Field("auto", description="Data format of the file; 'auto' detects it from the keys.")
    task_type: TaskType | None = Field(None, description="generation, qa, classification or language_modeling "
                                       "(default: from the data format, or the built-in's).")
    metrics: list[str] | None = Field(None, description="Metrics to compute (default: those of the task type).")
    limit: int | None = Field(None, ge=1, description="Score only the first LIMIT examples.")
    max_new_tokens: int | None = Field(None, ge=1, le=4096, description="Longest generated answer (default 64, "
                                       "or the built-in's).")
    system_prompt: str | None = Field(None, description="System message put before each conversation.")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("list at least one metric, or leave 'metrics' out for the task type's defaults")
        for name in value or []:
            if name not in METRICS:
                raise ValueError(_unknown_metric(name))
        return list(dict.fromkeys(value)) if value else value

    @field_validator("builtin")
    @classmethod
    def _known_builtin(cls, value: str | None) -> str | None:
        if value is not None and value not in BUILTIN_TASKS:
            raise ValueError(f"unknown built-in task '{value}' (known: {', '.join(BUILTIN_TASKS)})")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TaskConfig:
        if (self.data is None) == (self.builtin is None):
            raise ValueError("give exactly one of 'data' (a file) and 'builtin' (a built-in task)")
        return self


class SuiteConfig(StrictModel):
    """An evaluation: tasks to run on a model, generation settings, and the statistics of comparisons."""

    examples_hint: ClassVar[str] = "'tuneforge eval --help' and the README's evaluation section show the suite fields"

    name: str = Field("eval", description="Name of the suite, shown in reports.")
    tasks: list[TaskConfig] = Field(min_length=1, description="Tasks to run, in order.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch (left padding, greedy).")
    latency_samples: int = Field(8, ge=0, description="Requests per task timed one at a time for latency and "
                                 "time to first token (0: skip).")
    resamples: int = Field(1000, ge=100, description="Paired-bootstrap resamples in comparisons.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of confidence intervals and of the verdict.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")


@dataclass(frozen=True)
class LoadedTask:
    """A task ready to run: its examples, where they came from, and what to compute."""

    name: str
    data: str
    data_sha256: str
    format: str
    task_type: str
    metrics: list[str]
    max_new_tokens: int
    examples: list[Example]


SuiteLike = SuiteConfig | dict[str, Any] | str | Path


def load_suite(path: str | Path) -> SuiteConfig:
    """Read a suite YAML file; errors name the file, the line and the field."""
    return load_config(path, SuiteConfig)


def load_task(
    task: TaskConfig, *, base_dir: Path | None = None, file: str | None = None, field: str = "metrics"
) -> LoadedTask:
    """Read (or generate) a task's examples and settle its task type and metrics.

    Args:
        task: The task's config.
        base_dir: Folder that a relative ``data`` path is relative to (the suite file's).
        file: The suite file, named in errors.
        field: Where the task's metrics are in that file, named in errors.

    Raises:
        DataError: The data file is missing, empty or malformed (names the file and line).
        ConfigError: A metric does not fit the task type (e.g. BLEU on raw text).
    """
    if task.builtin is not None:
        builtin = BUILTIN_TASKS[task.builtin]
        records = builtin.generate()
        fmt = "messages"
        examples = [normalize(Record(r, f"builtin:{task.builtin}", i + 1), fmt) for i, r in enumerate(records)]
        # Hashed as the JSONL file the quickstart writes, so that the file and the built-in compare as equal.
        digest = hashlib.sha256("".join(json.dumps(r) + "\n" for r in records).encode()).hexdigest()
        task_type = task.task_type or builtin.task_type
        metrics = task.metrics or list(builtin.metrics)
        name, data, max_new = task.name or task.builtin, f"builtin:{task.builtin}", builtin.max_new_tokens
    else:
        path = Path(task.data).expanduser()
        path = path if path.is_absolute() or base_dir is None else base_dir / path
        examples, fmt = load_examples(path, fmt=task.format, system_prompt=task.system_prompt)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        task_type = task.task_type or task_type_for_format(fmt)
        metrics = task.metrics or list(DEFAULT_METRICS[task_type])
        name, data, max_new = task.name or path.stem, str(path), 64
    _check_fit(metrics, task_type, fmt, file=file, field=field)
    examples = examples[: task.limit] if task.limit else examples
    return LoadedTask(name, data, digest, fmt, task_type, metrics, task.max_new_tokens or max_new, examples)


def _check_fit(metrics: list[str], task_type: str, fmt: str, *, file: str | None, field: str) -> None:
    if fmt == "text" and task_type != "language_modeling":
        raise ConfigError(
            f"raw-text data has no reference answers, so it cannot be scored as a {task_type} task",
            file=file, field=field.removesuffix("metrics") + "task_type",
            hint="use task_type language_modeling (metric: perplexity), or data with answers",
        )
    for name in metrics:
        if task_type not in METRICS[name].task_types:
            fits = [m for m, metric in METRICS.items() if task_type in metric.task_types]
            raise ConfigError(
                f"metric '{name}' does not fit a {task_type} task (it fits: {', '.join(METRICS[name].task_types)})",
                file=file, field=field,
                hint=f"for a {task_type} task choose from {', '.join(fits)}; or, if the data is "
                f"{' or '.join(METRICS[name].task_types)}, say so with task_type (--task-type)",
            )


def load_tasks(suite: SuiteLike) -> tuple[SuiteConfig, list[LoadedTask]]:
    """Validate a suite (a config, a mapping, or a YAML path) and read every task's data.

    Raises:
        ConfigError: The suite does not validate, or a metric does not fit its task.
        DataError: A data file is missing, empty or malformed.
    """
    file, base_dir = None, None
    if isinstance(suite, (str, Path)):
        file, base_dir = str(suite), Path(suite).parent
        suite = load_suite(suite)
    elif isinstance(suite, dict):
        suite = validate_config(suite, SuiteConfig)
    tasks = [
        load_task(t, base_dir=base_dir, file=file, field=f"tasks.{i}.metrics" if file else "metrics")
        for i, t in enumerate(suite.tasks)
    ]
    return suite, tasks
