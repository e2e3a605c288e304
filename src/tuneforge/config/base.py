"""What every config model shares: the strict base class and the types several configs use."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

TargetModules = Union[Literal["auto", "all-linear"], list[str]]
DataFormat = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "qa", "text", "classification"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NamedConfig(StrictModel):
    """A registered kind's config (a method, a task, a compression step): ``name`` is its tag in the union.

    Each subclass narrows ``name`` to ``Literal["its-name"]`` with that name as default.
    """

    name: str = Field(description="The registered name.")
