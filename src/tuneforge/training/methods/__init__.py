"""Fine-tuning methods as small strategies, registered by name (as PEFT registers its tuners).

A strategy says whether it trains an adapter, which quantization (if any) the base model is loaded
with, how to make a loaded model trainable, and, where the method needs them, its own optimizer
(LoRA+) or Trainer callbacks (AdaLoRA's rank reallocation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class PrepareContext:
    """What a strategy may need to know about the run besides its own options.

    Attributes:
        model_type: ``config.model_type`` of the base model.
        gradient_checkpointing: Whether activations are recomputed.
        total_steps: Optimizer steps the run will take.
        task_type: PEFT task type (``CAUSAL_LM``, ``SEQ_2_SEQ_LM``, ``SEQ_CLS``, ...).
    """

    model_type: str
    gradient_checkpointing: bool = False
    total_steps: int = 0
    task_type: str = "CAUSAL_LM"


def _none(*args: Any, **kwargs: Any) -> Any:
    return None


@dataclass(frozen=True)
class MethodStrategy:
    """One fine-tuning method.

    Attributes:
        name: The ``method.name`` it serves.
        trains_adapter: Whether the result is a PEFT adapter (saved apart from the base).
        prepare: ``prepare(model, method_config, context)`` returns the trainable model.
        quantization: ``quantization(method_config, compute_dtype)``: a transformers quantization
            config for loading the base model, or ``None``.
        optimizer: ``optimizer(model, method_config, train_settings)``: an optimizer replacing
            the Trainer's AdamW, or ``None``.
        callbacks: ``callbacks(model, method_config)``: extra Trainer callbacks.
        mergeable: Whether the adapter can be folded into the base weights.
    """

    name: str
    trains_adapter: bool
    prepare: Callable[..., Any]
    quantization: Callable[[Any, Any], Any] = _none
    optimizer: Callable[[Any, Any, Any], Any] = _none
    callbacks: Callable[[Any, Any], list] = lambda model, method: []
    mergeable: bool = True


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
    from tuneforge.training.methods import (  # noqa: F401  (they register)
        adalora, bottleneck, freeze, full, ia3, lora, prompt_learning, qlora,
    )
