"""Fine-tuning methods as small strategies, registered by name (as PEFT registers its tuners).

A strategy says whether it trains an adapter, which quantization (if any) the base model is loaded
with, and how to make a loaded model trainable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class MethodStrategy:
    """One fine-tuning method.

    Attributes:
        name: The ``method.name`` it serves.
        trains_adapter: Whether the result is a PEFT adapter (saved apart from the base).
        prepare: ``prepare(model, method_config, model_type=..., gradient_checkpointing=...)`` returns the
            trainable model.
        quantization: ``quantization(method_config, compute_dtype)`` returns a transformers
            quantization config for loading the base model, or ``None``.
    """

    name: str
    trains_adapter: bool
    prepare: Callable[..., Any]
    quantization: Callable[[Any, Any], Any] | None = None


_REGISTRY: dict[str, MethodStrategy] = {}


def register(strategy: MethodStrategy) -> MethodStrategy:
    """Add a strategy to the registry under its name."""
    _REGISTRY[strategy.name] = strategy
    return strategy


def get_method(name: str) -> MethodStrategy:
    """The strategy registered as ``name``."""
    _load_builtin_methods()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown method '{name}'", field="method.name", hint=f"use one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _load_builtin_methods() -> None:
    from tuneforge.training.methods import freeze, full, lora, qlora  # noqa: F401  (they register)
