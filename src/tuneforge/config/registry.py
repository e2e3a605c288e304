"""Registries of plugin kinds (methods, tasks, compression steps): a config class, its strategy and its name in one call.

As PEFT's ``register_peft_method(name, config_cls, model_cls)`` registers a tuner, a :class:`Registry` takes a
pydantic config class and the import path of the strategy that runs it. Everything that lists the kind is built
from the registry, so nothing can drift: the pydantic discriminated union of the config field that holds it
(rebuilt when a plugin registers later), the names in field descriptions, help texts and errors, and the
strategies. The strategy is an import path (``"package.module:ATTRIBUTE"``), imported on first use, so that
``import tuneforge.config`` stays light (no torch) and the config layer imports nothing above it.

.. code-block:: python

    @METHODS.register(strategy="tuneforge.training.methods.lora:LORA")
    class LoraMethod(StrictModel):
        name: Literal["lora"] = Field("lora", description="Method name.")
        r: int = 16
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from tuneforge.errors import ConfigError, suggest

C = TypeVar("C", bound=BaseModel)


@dataclass(frozen=True)
class Entry(Generic[C]):
    """One registered kind.

    Attributes:
        name: The value of the config's ``name`` field (the discriminator).
        config: The pydantic config class.
        strategy: Import path of the strategy object, ``"package.module:ATTRIBUTE"``.
        extra: Registry-specific facts (e.g. what a method's template shows).
    """

    name: str
    config: type[C]
    strategy: str
    extra: dict[str, Any]


@dataclass
class _Binding:
    """A model field whose annotation is built from the registry's union."""

    model: type[BaseModel]
    field: str
    wrap: Callable[[Any], Any]
    description: str | None


class Registry(Generic[C]):
    """The registered config classes and strategies of one kind, in registration order.

    Args:
        kind: What is registered, for messages (``method``, ``task``, ``step``).
        field: The config field that names it, for errors (``method.name``).
    """

    def __init__(self, kind: str, *, field: str) -> None:
        self.kind = kind
        self.field = field
        self._entries: dict[str, Entry[C]] = {}
        self._bindings: list[_Binding] = []

    def register(self, *, strategy: str, **extra: Any) -> Callable[[type[C]], type[C]]:
        """Class decorator: register a config class with its strategy; the name is its ``name`` default.

        Args:
            strategy: Import path of the strategy, ``"package.module:ATTRIBUTE"``.
            **extra: Registry-specific facts, kept in :attr:`Entry.extra`.
        """

        def decorate(config: type[C]) -> type[C]:
            self.add(config, strategy=strategy, **extra)
            return config

        return decorate

    def add(self, config: type[C], *, strategy: str, **extra: Any) -> Entry[C]:
        """Register ``config`` (see :meth:`register`) and rebuild the models whose field holds the union."""
        name = tag_of(config)
        if not isinstance(name, str):
            raise TypeError(f"{config.__name__} needs a field `name: Literal['...'] = '...'` to be a {self.kind}")
        if ":" not in strategy:
            raise ValueError(f"strategy of {self.kind} '{name}' must be 'package.module:ATTRIBUTE', not {strategy!r}")
        entry = Entry(name=name, config=config, strategy=strategy, extra=extra)
        self._entries[name] = entry
        self._rebuild()
        return entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` (for tests that register a throwaway kind)."""
        del self._entries[name]
        self._rebuild()

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def configs(self) -> tuple[type[C], ...]:
        """The registered config classes, in registration order."""
        return tuple(e.config for e in self._entries.values())

    def __iter__(self) -> Iterator[Entry[C]]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry[C]:
        """The entry of ``name``; an unknown name is a :class:`ConfigError` with a close match as hint."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'", field=self.field,
                              hint=suggest(name, self.names()) or f"use one of {self.listing()}")
        return self._entries[name]

    def strategy(self, name: str) -> Any:
        """Import and return the strategy of ``name``."""
        module, _, attribute = self.entry(name).strategy.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def listing(self, conjunction: str = "or") -> str:
        """The names as prose: ``a, b or c``."""
        names = list(self.names())
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {conjunction} {names[-1]}"

    def union(self) -> Any:
        """The discriminated union of the registered config classes (a single class when only one)."""
        configs = self.configs()
        if len(configs) == 1:
            return Annotated[configs[0], Field(discriminator="name")]
        return Annotated[Union[configs], Field(discriminator="name")]  # noqa: UP007  (a runtime tuple of classes)

    def bind(self, model: type[BaseModel], field: str, *, wrap: Callable[[Any], Any] = lambda u: u,
             description: str | None = None) -> None:
        """Make ``model.field`` hold ``wrap(union)``; rebuilt whenever the registry changes.

        Args:
            model: The pydantic model.
            field: Its field that holds the registered kind.
            wrap: Builds the field's type from the union (``lambda u: list[u]`` for a list of steps).
            description: The field's description; ``{names}`` becomes :meth:`listing`.
        """
        self._bindings.append(_Binding(model, field, wrap, description))
        self._rebuild()

    def _rebuild(self) -> None:
        if not self._entries:
            return
        for binding in self._bindings:
            old = binding.model.__pydantic_fields__[binding.field]
            new = FieldInfo.merge_field_infos(old, FieldInfo.from_annotation(binding.wrap(self.union())))
            if binding.description is not None:
                new.description = binding.description.format(names=self.listing())
            binding.model.__pydantic_fields__[binding.field] = new
            binding.model.model_rebuild(force=True)


def tag_of(model: type[BaseModel]) -> Any:
    """The default of a model's ``name`` field: the tag that selects it in a discriminated union."""
    field = model.model_fields.get("name")
    return field.default if field is not None else None
