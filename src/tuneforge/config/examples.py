"""``tuneforge config template NAME``: an example training config for every registered method.

The common part is ``templates/train.yaml``; the method block is ``templates/methods/NAME.yaml`` (hand-written,
with comments) where it exists, else it is generated from the method class's defaults, so every registered
method has a template. The lists of task names and data formats come from the registry and the config types.
"""

from __future__ import annotations

import typing
from importlib import resources
from string import Template

import yaml

from tuneforge.config.base import DataFormat
from tuneforge.config.data import CHAT_TEMPLATE_NAMES
from tuneforge.config.methods import METHODS, MethodConfig
from tuneforge.config.tasks import TASKS
from tuneforge.errors import NotFoundError


def method_template(name: str) -> str:
    """The commented example config of the method registered as ``name``.

    Raises:
        NotFoundError: No method is registered as ``name``.
    """
    if name not in METHODS:
        raise NotFoundError(f"no template named '{name}'", hint=f"use one of {', '.join(METHODS.names())}")
    entry = METHODS.entry(name)
    return Template(_read("train.yaml")).substitute(
        title=entry.extra.get("title") or _first_line(entry.config),
        method=method_block(name, entry.config).rstrip("\n"),
        learning_rate=entry.extra.get("learning_rate", "2.0e-4"),
        task_names=" | ".join(TASKS.names()),
        formats=" | ".join(f for f in typing.get_args(DataFormat) if f != "auto"),
        chat_templates=" | ".join(CHAT_TEMPLATE_NAMES[1:]),
        name=name,
    )


def method_block(name: str, config: type[MethodConfig]) -> str:
    """The ``method:`` block of a template: the hand-written file, else the class's defaults as YAML."""
    path = resources.files("tuneforge.config").joinpath("templates", "methods", f"{name}.yaml")
    if path.is_file():
        return path.read_text(encoding="utf-8")
    values = config().model_dump(mode="json")
    if list(values) == ["name"]:
        return f"method: {name}\n"
    return yaml.safe_dump({"method": values}, sort_keys=False)


def _read(file: str) -> str:
    return resources.files("tuneforge.config").joinpath("templates", file).read_text(encoding="utf-8")


def _first_line(config: type[MethodConfig]) -> str:
    return (config.__doc__ or config.__name__).strip().splitlines()[0].rstrip(".")
