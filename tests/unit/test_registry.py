"""Methods, tasks and compression steps are registered once: unions, names, exports and templates follow."""

from __future__ import annotations

import typing
from typing import Literal

import pytest
import yaml
from pydantic import Field

import tuneforge.config as config_package
from tuneforge.compression.recipe import STEPS, CompressionRecipe, StepConfig, step_names
from tuneforge.config import (
    METHODS,
    TASKS,
    MethodConfig,
    TrainConfig,
    TrainTaskConfig,
    method_names,
    method_template,
    task_names,
    validate_config,
)
from tuneforge.errors import ConfigError

BASE = {"model": "tiny", "data": {"train": "train.jsonl"}}


class ThrowawayMethod(MethodConfig):
    """A throwaway method registered by a test."""

    name: Literal["throwaway"] = Field("throwaway", description="Method name.")
    width: int = Field(3, ge=1, description="A made-up option.")


class ThrowawayTask(TrainTaskConfig):
    """A throwaway task registered by a test."""

    name: Literal["throwaway_task"] = Field("throwaway_task", description="Task name.")


class ThrowawayStep(StepConfig):
    """A throwaway compression step registered by a test."""

    name: Literal["throwaway_step"] = Field("throwaway_step", description="Step kind.")


@pytest.fixture
def throwaway_method():
    METHODS.add(ThrowawayMethod, strategy="tuneforge.training.methods.full:FULL", title="a throwaway method")
    yield ThrowawayMethod
    METHODS.remove("throwaway")


def _members(annotation: object) -> set[type]:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}  # type: ignore[arg-type]
    return {leaf for arg in args for leaf in _members(arg)} if typing.get_origin(annotation) is not typing.Annotated \
        else _members(args[0])


def test_a_registered_method_validates_and_is_named_everywhere(throwaway_method):
    config = validate_config({**BASE, "method": {"name": "throwaway", "width": 5}}, TrainConfig)
    assert isinstance(config.method, ThrowawayMethod) and config.method.width == 5
    assert validate_config({**BASE, "method": "throwaway"}, TrainConfig).method.width == 3
    assert "throwaway" in method_names()
    assert "throwaway" in TrainConfig.model_fields["method"].description
    assert ThrowawayMethod in _members(TrainConfig.model_fields["method"].annotation)
    template = method_template("throwaway")
    assert "a throwaway method" in template and yaml.safe_load(template)["method"] == {"name": "throwaway", "width": 3}
    assert validate_config(yaml.safe_load(template), TrainConfig).method.name == "throwaway"


def test_an_unregistered_method_is_gone_from_union_names_and_errors(throwaway_method):
    METHODS.remove("throwaway")
    try:
        assert "throwaway" not in method_names()
        assert "throwaway" not in TrainConfig.model_fields["method"].description
        with pytest.raises(ConfigError, match="unknown method 'throwaway'"):
            validate_config({**BASE, "method": "throwaway"}, TrainConfig)
    finally:
        METHODS.add(ThrowawayMethod, strategy="tuneforge.training.methods.full:FULL")


def test_the_union_holds_exactly_the_registered_classes():
    assert _members(TrainConfig.model_fields["method"].annotation) == set(METHODS.configs())
    assert _members(TrainConfig.model_fields["task"].annotation) == set(TASKS.configs())
    assert _members(CompressionRecipe.model_fields["steps"].annotation) == set(STEPS.configs())


def test_descriptions_name_every_registered_kind():
    for names, field in ((method_names(), TrainConfig.model_fields["method"]),
                         (task_names(), TrainConfig.model_fields["task"]),
                         (step_names(), CompressionRecipe.model_fields["steps"])):
        assert all(name in field.description for name in names), field.description


def test_config_package_exports_every_registered_class():
    for config in (*METHODS.configs(), *TASKS.configs()):
        assert getattr(config_package, config.__name__) is config
        assert config.__name__ in config_package.__all__


@pytest.mark.parametrize("name", method_names())
def test_every_method_template_shows_every_option_of_its_class(name):
    data = yaml.safe_load(method_template(name))
    method = data["method"]
    assert validate_config(data, TrainConfig).method.name == name
    shown = {"name"} if isinstance(method, str) else set(method)
    assert shown == set(METHODS.entry(name).config.model_fields), "the template's method block lists every option"
    assert " | ".join(task_names()) in method_template(name)


def test_every_registered_strategy_imports():
    from tuneforge.compression.stage import StepStrategy, get_step
    from tuneforge.training.methods import MethodStrategy, get_method
    from tuneforge.training.tasks import TaskStrategy, get_task

    assert all(isinstance(get_method(n), MethodStrategy) for n in method_names())
    assert all(isinstance(get_task(n), TaskStrategy) for n in task_names())
    assert all(isinstance(get_step(n), StepStrategy) for n in step_names())


def test_unknown_names_suggest_a_registered_one():
    from tuneforge.training.methods import get_method

    with pytest.raises(ConfigError) as caught:
        get_method("lorra")
    assert caught.value.field == "method.name" and caught.value.hint == "did you mean 'lora'?"


def test_a_registered_task_and_step_validate():
    TASKS.add(ThrowawayTask, strategy="tuneforge.training.tasks.sft:LANGUAGE_MODELING")
    STEPS.add(ThrowawayStep, strategy="tuneforge.compression.steps.quantize:QUANTIZE")
    try:
        assert isinstance(validate_config({**BASE, "task": "throwaway_task"}, TrainConfig).task, ThrowawayTask)
        recipe = validate_config({"steps": [{"name": "throwaway_step"}]}, CompressionRecipe)
        assert isinstance(recipe.steps[0], ThrowawayStep)
        assert "throwaway_task" in task_names() and "throwaway_step" in step_names()
    finally:
        TASKS.remove("throwaway_task")
        STEPS.remove("throwaway_step")
    with pytest.raises(ConfigError):
        validate_config({"steps": [{"name": "throwaway_step"}]}, CompressionRecipe)


def test_a_registration_needs_a_name_tag_and_an_import_path():
    class Nameless(MethodConfig):
        pass

    with pytest.raises(TypeError, match="needs a field"):
        METHODS.add(Nameless, strategy="x:y")
    with pytest.raises(ValueError, match="package.module:ATTRIBUTE"):
        METHODS.add(ThrowawayMethod, strategy="tuneforge.training.methods.full.FULL")
    assert "throwaway" not in method_names()
