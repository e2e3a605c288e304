"""Optuna samplers and pruners by the names a search file uses (one sampler instance per study object)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from tuneforge.errors import MissingDependencyError

if TYPE_CHECKING:
    import optuna

    from tuneforge.hpo.space import SearchConfig


def make_sampler(search: SearchConfig, *, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler the search names, seeded with ``seed`` (each trial process passes its own).

    Raises:
        MissingDependencyError: ``cmaes`` without the ``cmaes`` package.
    """
    import optuna

    samplers = optuna.samplers
    match search.sampler:
        case "tpe":
            return samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        case "nsga2":
            return samplers.NSGAIISampler(seed=seed)
        case "random":
            return samplers.RandomSampler(seed=seed)
        case "qmc":
            with warnings.catch_warnings():  # "experimental" since Optuna 3.0
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        case "grid":
            return samplers.GridSampler(_grid(search), seed=seed)
        case "cmaes":
            try:
                import cmaes  # noqa: F401
            except ImportError:
                raise MissingDependencyError("cmaes", extra="hpo", purpose="the cmaes sampler") from None
            return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {search.sampler!r}")  # SearchConfig checked the name


def _grid(search: SearchConfig) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for name, param in search.space.items():
        if param.type == "categorical":
            grid[name] = list(param.choices)
        else:
            count = int(round((param.high - param.low) / param.step)) + 1
            grid[name] = [param.low + i * param.step for i in range(count)]
    return grid


def make_pruner(search: SearchConfig) -> optuna.pruners.BasePruner:
    """The pruner the search names; a few startup trials and a warm-up so that early noise prunes nothing."""
    import optuna

    pruners = optuna.pruners
    match search.pruner:
        case "median":
            return pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        case "hyperband":
            return pruners.HyperbandPruner(min_resource=1, max_resource="auto")
        case "successive_halving":
            return pruners.SuccessiveHalvingPruner()
    return pruners.NopPruner()
