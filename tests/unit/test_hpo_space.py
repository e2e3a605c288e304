"""Search files: a good one loads; each mistake is refused before any trial, naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneforge.errors import ConfigError
from tuneforge.hpo.space import apply_overrides, load_search

BASE = {"model": "smollm2-135m", "method": {"name": "lora", "r": 8},
        "data": {"train": "data/train.jsonl", "eval": "data/eval.jsonl"}, "train": {"max_steps": 30}}
SEARCH = {
    "base": "config.yaml",
    "space": {"train.learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True},
              "method.r": {"type": "categorical", "choices": [4, 8, 16, 32]},
              "train.epochs": {"type": "int", "low": 1, "high": 4}},
    "objective": [{"metric": "exact_match", "data": "data/val.jsonl", "direction": "maximize"},
                  {"metric": "latency_p50_ms"}],
    "sampler": "nsga2", "pruner": "none", "n_trials": 20, "timeout_minutes": 120, "max_concurrent": 2,
}


def write(tmp_path: Path, search: dict, base: dict | None = None) -> Path:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(base or BASE))
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(search, sort_keys=False))
    return path


def test_the_issue_search_file_loads_with_directions_and_paths(tmp_path):
    loaded = load_search(write(tmp_path, SEARCH))
    assert loaded.config.directions == ["maximize", "minimize"]  # latency: lower is better by default
    assert loaded.config.objective[0].data == str(tmp_path / "data/val.jsonl")  # relative to the search file
    assert loaded.config.objective[1].data == "data/eval.jsonl"  # the base config's eval split
    config = loaded.trial_config({"method.r": 32, "train.learning_rate": 3e-4}, output_dir="runs/t0")
    assert (config.method.r, config.train.learning_rate, config.output_dir) == (32, 3e-4, "runs/t0")
    assert config.train.max_steps == 30  # the rest of the base stays


def test_overrides_do_not_touch_the_base():
    base = {"train": {"learning_rate": 1.0}}
    assert apply_overrides(base, {"train.learning_rate": 2.0, "method.r": 4}) == {
        "train": {"learning_rate": 2.0}, "method": {"r": 4}}
    assert base == {"train": {"learning_rate": 1.0}}


def _error(tmp_path: Path, change: dict, base: dict | None = None) -> ConfigError:
    search = {**SEARCH, **change}
    with pytest.raises(ConfigError) as info:
        load_search(write(tmp_path, search, base))
    return info.value


@pytest.mark.parametrize(("space", "field", "words"), [
    ({"train.learning_rte": {"type": "float", "low": 1e-5, "high": 1e-3}}, "space.train.learning_rte",
     "did you mean 'learning_rate'"),
    ({"trian.epochs": {"type": "int", "low": 1, "high": 3}}, "space.trian.epochs", "did you mean 'train'"),
    ({"train.learning_rate": {"type": "float", "low": 1e-5, "high": 2.0}}, "space.train.learning_rate",
     "less than 1"),
    ({"method.r": {"type": "float", "low": 4, "high": 32}}, "space.method.r", "integer"),
    ({"train.precision": {"type": "categorical", "choices": ["bf16", "fp8"]}}, "space.train.precision", "'fp8'"),
    ({"seed.value": {"type": "int", "low": 1, "high": 3}}, "space.seed.value", "is a value"),
])
def test_space_mistakes_name_the_field(tmp_path, space, field, words):
    err = _error(tmp_path, {"space": space})
    assert err.field == field and str(tmp_path / "search.yaml") in err.message
    assert words in str(err)


def test_a_field_that_the_method_lacks_is_refused(tmp_path):
    err = _error(tmp_path, {"space": {"method.r": {"type": "categorical", "choices": [4, 8]}}},
                 base={**BASE, "method": "full"})
    assert err.field == "space.method.r" and "the full method has no field 'r'" in err.message


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"objective": [{"metric": "exact_mach"}]}, "objective.0.metric", "did you mean 'exact_match'"),
    ({"sampler": "tpz"}, "sampler", "did you mean 'tpe'"),
    ({"pruner": "medain"}, "pruner", "did you mean 'median'"),
    ({"pruner": "median"}, None, "prunes single-objective studies only"),
    ({"sampler": "grid", "objective": [{"metric": "eval_loss"}]}, None, "grid sampler needs finite ranges"),
    ({"n_trials": 0}, "n_trials", "greater than or equal to 1"),
    ({"spaces": {}}, "spaces", "did you mean 'space'"),
])
def test_search_mistakes_name_the_field(tmp_path, change, field, words):
    err = _error(tmp_path, change)
    assert err.field == field
    assert words in str(err)


def test_pruning_and_objectives_need_an_eval_split(tmp_path):
    no_eval = {**BASE, "data": {"train": "data/train.jsonl"}}
    err = _error(tmp_path, {"objective": [{"metric": "eval_loss"}], "pruner": "median", "sampler": "tpe"}, no_eval)
    assert err.field == "objective.0.data"
    err = _error(tmp_path, {"objective": [{"metric": "exact_match", "data": "v.jsonl"}], "pruner": "median",
                            "sampler": "tpe"}, no_eval)
    assert err.field == "pruner" and "data.eval" in err.message


@pytest.mark.parametrize("sampler", ["tpe", "cmaes", "nsga2", "random", "grid", "qmc"])
def test_every_sampler_and_pruner_builds(tmp_path, sampler):
    pytest.importorskip("optuna")
    from tuneforge.hpo.samplers import make_pruner, make_sampler

    space = {"method.r": {"type": "categorical", "choices": [4, 8]}, "train.epochs": {"type": "int", "low": 1,
                                                                                     "high": 3}}
    loaded = load_search(write(tmp_path, {**SEARCH, "sampler": sampler, "space": space,
                                          "objective": [{"metric": "eval_loss"}], "pruner": "hyperband"}))
    built = make_sampler(loaded.config, seed=1)
    assert type(built).__name__.lower().startswith(sampler.replace("nsga2", "nsgaii")[:3])
    assert type(make_pruner(loaded.config)).__name__ == "HyperbandPruner"


def test_a_study_resumes_only_with_the_same_search(tmp_path):
    pytest.importorskip("optuna")
    from tuneforge.errors import ConflictError, NotFoundError
    from tuneforge.hpo.study import create_study
    from tuneforge.settings import Settings

    settings = Settings(home=str(tmp_path / "home"))
    loaded = load_search(write(tmp_path, SEARCH))
    with pytest.raises(NotFoundError, match="no study 's'"):
        create_study(loaded, name="s", settings=settings, output=tmp_path, resume=True)
    create_study(loaded, name="s", settings=settings, output=tmp_path)
    with pytest.raises(ConflictError, match="--resume"):
        create_study(loaded, name="s", settings=settings, output=tmp_path)
    assert create_study(loaded, name="s", settings=settings, output=tmp_path, resume=True).study_name == "s"
    other = load_search(write(tmp_path, {**SEARCH, "n_trials": 3, "sampler": "random"}))
    with pytest.raises(ConflictError, match="another space"):
        create_study(other, name="s", settings=settings, output=tmp_path, resume=True)
    assert (tmp_path / "home" / "studies.db").is_file()  # beside tuneforge.db, not inside it


def test_the_example_search_files_load():
    examples = sorted((Path(__file__).parents[2] / "configs" / "hpo").glob("*.yaml"))
    assert examples
    for path in examples:
        assert load_search(path).config.n_trials >= 1
