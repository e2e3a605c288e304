"""The search file (``search.yaml``): a base training config, a space of dotted-path overrides, objectives.

.. code-block:: yaml

    base: config.yaml                 # a training config; the search overrides its fields by dotted path
    space:
      train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      method.r: {type: categorical, choices: [4, 8, 16, 32]}
    objective:
      - {metric: exact_match, data: data/eval.jsonl, direction: maximize}
    sampler: tpe
    pruner: median
    n_trials: 20

Everything that can be checked without training is checked by :func:`load_search`: the dotted paths
exist in the base config (a typo gets the close field), every bound and choice validates as a value of its
field, the metrics are known, the sampler and pruner exist and fit the objectives.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tuneforge.config import load_config, validate_config
from tuneforge.config.models import StrictModel, TrainConfig
from tuneforge.errors import ConfigError, suggest
from tuneforge.evaluation.metrics import METRICS

SAMPLERS = ("tpe", "cmaes", "nsga2", "random", "grid", "qmc")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
SPEED_METRICS = {"latency_p50_ms": False, "latency_p95_ms": False, "ttft_p50_ms": False, "ttft_p95_ms": False,
                 "tokens_per_second": True}  # name -> higher is better
EVAL_LOSS = "eval_loss"


def metric_names() -> list[str]:
    """Every metric an objective may name: the evaluation metrics, the speed figures and ``eval_loss``."""
    return [EVAL_LOSS, *METRICS, *SPEED_METRICS]


class FloatParam(StrictModel):
    """A float between ``low`` and ``high`` (``trial.suggest_float``)."""

    type: Literal["float"] = Field(description="Parameter type.")
    low: float = Field(description="Lowest value.")
    high: float = Field(description="Highest value.")
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    step: float | None = Field(None, gt=0, description="Discretization step (not with log).")

    def probes(self) -> list[Any]:
        """Values checked against the field before any trial: both bounds and a value between them that is not
        whole (an integer field accepts 4.0 but not the 13.6 a float range samples)."""
        return [self.low, self.high, self.low + (self.high - self.low) * 0.4142]


class IntParam(StrictModel):
    """An integer between ``low`` and ``high`` inclusive (``trial.suggest_int``)."""

    type: Literal["int"] = Field(description="Parameter type.")
    low: int = Field(description="Lowest value.")
    high: int = Field(description="Highest value.")
    log: bool = Field(False, description="Sample on a log scale.")
    step: int = Field(1, ge=1, description="Step between values (not with log).")

    def probes(self) -> list[Any]:
        """Values checked against the field before any trial: both bounds."""
        return [self.low, self.high]


class CategoricalParam(StrictModel):
    """One of ``choices`` (``trial.suggest_categorical``)."""

    type: Literal["categorical"] = Field(description="Parameter type.")
    choices: list[str | int | float | bool | None] = Field(min_length=1, description="The values to choose from.")

    def probes(self) -> list[Any]:
        """Every choice is checked against the field before any trial."""
        return list(self.choices)


ParamSpace = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class ObjectiveConfig(StrictModel):
    """One objective: a metric computed on an evaluation split after each trial trains."""

    metric: str = Field(description="eval_loss, an evaluation metric (exact_match, accuracy, token_f1, ...) or a "
                        "speed figure (latency_p50_ms, tokens_per_second, ...).")
    data: str | None = Field(None, description="Evaluation data (relative to the search file); default: the base "
                             "config's data.eval. Never the test split: keep that for after the study.")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default: maximize for scores, "
                                                              "minimize for eval_loss, perplexity and latencies.")
    limit: int | None = Field(None, ge=1, description="Score only the first LIMIT examples.")
    max_new_tokens: int | None = Field(None, ge=1, description="Longest generated answer (default 64).")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in metric_names():
            guess = suggest(value, metric_names())
            raise ValueError(f"unknown metric '{value}' ({guess + ' ' if guess else ''}known: "
                             f"{', '.join(metric_names())})")
        return value

    @property
    def resolved_direction(self) -> str:
        """The direction given, or the metric's own."""
        if self.direction is not None:
            return self.direction
        if self.metric in SPEED_METRICS:
            return "maximize" if SPEED_METRICS[self.metric] else "minimize"
        if self.metric == EVAL_LOSS:
            return "minimize"
        return "maximize" if METRICS[self.metric].higher_is_better else "minimize"


def _known_name(value: str, known: tuple[str, ...], what: str) -> str:
    if value not in known:
        guess = suggest(value, known)
        raise ValueError(f"unknown {what} '{value}' ({guess + ' ' if guess else ''}known: {', '.join(known)})")
    return value


class SearchConfig(StrictModel):
    """A hyperparameter search: the base config, the space of overrides, the objectives and the budget."""

    examples_hint: ClassVar[str] = "the README's hyperparameter search section shows a search file with every field"

    base: str = Field(description="The training config to search around (relative to the search file).")
    space: dict[str, ParamSpace] = Field(min_length=1, description="Dotted path of a training-config field -> "
                                         "its range: {type: float|int, low, high, log} or {type: categorical, "
                                         "choices}.")
    objective: list[ObjectiveConfig] = Field(min_length=1, max_length=3, description="One or more metrics, each "
                                             "with a direction; two give a Pareto front.")
    sampler: str = Field("tpe", description=f"Optuna sampler: {', '.join(SAMPLERS)}.")
    pruner: str = Field("median", description=f"Optuna pruner on the eval loss: {', '.join(PRUNERS)}.")
    n_trials: int = Field(20, ge=1, le=10000, description="Trials to finish (complete, pruned or failed).")
    timeout_minutes: float | None = Field(None, gt=0, description="Start no trial after this long.")
    max_concurrent: int = Field(1, ge=1, le=64, description="Trials run at once by one 'tuneforge tune'.")
    max_steps: int | None = Field(None, ge=1, description="Cap on the optimizer steps of any one trial.")
    seed: int = Field(0, description="Seed of the sampler (each trial process adds its own offset).")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        return _known_name(value, SAMPLERS, "sampler")

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, value: str) -> str:
        return _known_name(value, PRUNERS, "pruner")

    @model_validator(mode="after")
    def _fits_objectives(self) -> SearchConfig:
        many = len(self.objective) > 1
        if many and self.pruner != "none":
            raise ValueError("Optuna prunes single-objective studies only: set pruner: none for several objectives")
        if many and self.sampler == "cmaes":
            raise ValueError("cmaes optimizes one objective: use nsga2 or tpe for several")
        if self.sampler == "grid" and any(isinstance(p, FloatParam) and p.step is None for p in self.space.values()):
            raise ValueError("the grid sampler needs finite ranges: give every float a step, or use categorical")
        return self

    @property
    def directions(self) -> list[str]:
        """The study's direction per objective."""
        return [o.resolved_direction for o in self.objective]


@dataclass(frozen=True)
class LoadedSearch:
    """A checked search: its config, the base training config as a mapping, and where relative paths start.

    Attributes:
        config: The search config (objective data paths made absolute).
        base: The base training config, as validated (``model_dump(mode="json")``).
        file: The search file, or None for an API body.
    """

    config: SearchConfig
    base: dict[str, Any]
    file: str | None = None

    def trial_config(self, params: dict[str, Any], *, output_dir: str) -> TrainConfig:
        """The base config with ``params`` applied by dotted path, validated, writing to ``output_dir``."""
        data = apply_overrides(self.base, params)
        data["output_dir"] = output_dir
        return TrainConfig.model_validate(data)


def apply_overrides(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with each dotted path of ``params`` set to its value."""
    data = copy.deepcopy(base)
    for path, value in params.items():
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def load_search(path: str | Path) -> LoadedSearch:
    """Read a search file and its base config, and check the space before any trial.

    Raises:
        ConfigError: A bad search or base file, a dotted path the base config lacks (with the close field), a
            bound or choice its field refuses, an objective without evaluation data.
    """
    path = Path(path)
    search = load_config(path, SearchConfig)
    base_path = _relative(search.base, path.parent)
    base = load_config(base_path, TrainConfig)
    return check_search(search, base, file=str(path), base_dir=path.parent)


def check_search(search: SearchConfig, base: TrainConfig, *, file: str | None = None,
                 base_dir: Path | None = None) -> LoadedSearch:
    """Check ``search`` against ``base`` (paths, types, bounds, objectives) and resolve its data paths."""
    for name, param in search.space.items():
        _check_path(base, name, file=file)
        _check_values(base, name, param, file=file)
    objectives = []
    for i, objective in enumerate(search.objective):
        data = objective.data or base.data.eval
        if data is None:
            raise ConfigError(f"objective {objective.metric} needs evaluation data", file=file,
                              field=f"objective.{i}.data",
                              hint="give 'data:' (a validation split, never the test split) or data.eval in the base")
        if objective.metric != EVAL_LOSS:
            data = str(_relative(objective.data, base_dir)) if objective.data else data
        objectives.append(objective.model_copy(update={"data": data}))
    if search.pruner != "none" and base.data.eval is None:
        raise ConfigError("pruning reports the eval loss, but the base config has no data.eval", file=file,
                          field="pruner", hint="add data.eval to the base config, or set pruner: none")
    if any(o.metric == EVAL_LOSS and o.data != base.data.eval for o in objectives):
        raise ConfigError("eval_loss is computed on the base config's data.eval", file=file, field="objective",
                          hint="drop 'data:' from the eval_loss objective")
    config = search.model_copy(update={"objective": objectives})
    return LoadedSearch(config=config, base=base.model_dump(mode="json"), file=file)


def _relative(value: str, base_dir: Path | None) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def _check_path(base: TrainConfig, name: str, *, file: str | None) -> None:
    """Every part of the dotted path is a field of the base config (of its method/task as configured)."""
    node: Any = base
    walked: list[str] = []
    for part in name.split("."):
        if not isinstance(node, BaseModel):
            raise ConfigError(f"'{'.'.join(walked)}' is a value, not a section: it has no field '{part}'",
                              file=file, field=f"space.{name}", hint="search the field itself")
        fields = list(type(node).model_fields)
        if part not in fields:
            where = f"the {node.name} {walked[-1]}" if walked and hasattr(node, "name") else (
                f"'{'.'.join(walked)}'" if walked else "the training config")
            guess = suggest(part, fields)
            raise ConfigError(f"unknown field '{name}': {where} has no field '{part}'", file=file,
                              field=f"space.{name}", hint=guess or f"fields there: {', '.join(fields)}")
        node = getattr(node, part)
        walked.append(part)


def _check_values(base: TrainConfig, name: str, param: Any, *, file: str | None) -> None:
    """Each bound / choice, set into the base config, validates (type and bounds of the field)."""
    base_data = base.model_dump(mode="json")
    for value in param.probes():
        try:
            TrainConfig.model_validate(apply_overrides(base_data, {name: value}))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"{param.type} value {value!r} does not fit field '{name}': "
                              f"{err['msg'].removeprefix('Value error, ')}", file=file, field=f"space.{name}",
                              hint=f"change the range of {name} to values the field accepts") from None


def search_from_mapping(data: dict[str, Any], *, base: TrainConfig | dict[str, Any] | None = None) -> LoadedSearch:
    """A checked search from an API body: ``base`` is the training config itself (a mapping), not a path."""
    base_data = data.get("base") if base is None else base
    if not isinstance(base_data, (dict, TrainConfig)):
        raise ConfigError("the search's base must be a training config (a mapping) here", field="base")
    base_config = base_data if isinstance(base_data, TrainConfig) else validate_config(base_data, TrainConfig)
    search = validate_config({**data, "base": "inline"}, SearchConfig)
    return check_search(search, base_config)
