"""Fine-tuning methods as small strategies, registered with their config classes (as PEFT registers its tuners).

A method's config class is registered in :mod:`tuneforge.config.methods` together with the import path of its
strategy here (``@METHODS.register(strategy="tuneforge.training.methods.lora:LORA")``). A strategy says
whether it trains an adapter, which quantization (if any) the base model is loaded with, how to make a loaded
model trainable, and, where the method needs them, its own optimizer (LoRA+) or Trainer callbacks (AdaLoRA's
rank reallocation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generic, TypeVar, Union

from tuneforge.config.methods import METHODS, MethodConfig

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerCallback
    from transformers.utils.quantization_config import QuantizationConfigMixin

    from tuneforge.config.models import TrainSettings

    TrainableModel = Union[PreTrainedModel, PeftModel]

M = TypeVar("M", bound=MethodConfig)


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


def no_quantization(method: MethodConfig, compute_dtype: torch.dtype) -> None:
    """The base model loads unquantized."""
    return None


def no_optimizer(model: TrainableModel, method: MethodConfig, train: TrainSettings) -> None:
    """The Trainer's own AdamW."""
    return None


def no_callbacks(model: TrainableModel, method: MethodConfig) -> list[TrainerCallback]:
    """No extra Trainer callbacks."""
    return []


@dataclass(frozen=True)
class MethodStrategy(Generic[M]):
    """One fine-tuning method; ``M`` is its config class.

    Attributes:
        trains_adapter: Whether the result is a PEFT adapter (saved apart from the base).
        prepare: ``prepare(model, method_config, context)`` returns the trainable model.
        quantization: ``quantization(method_config, compute_dtype)``: a transformers quantization
            config for loading the base model, or ``None``.
        optimizer: ``optimizer(model, method_config, train_settings)``: an optimizer replacing
            the Trainer's AdamW, or ``None``.
        callbacks: ``callbacks(model, method_config)``: extra Trainer callbacks.
        mergeable: Whether the adapter can be folded into the base weights.
    """

    trains_adapter: bool
    prepare: Callable[[PreTrainedModel, M, PrepareContext], TrainableModel]
    quantization: Callable[[M, torch.dtype], QuantizationConfigMixin | None] = no_quantization
    optimizer: Callable[[TrainableModel, M, TrainSettings], torch.optim.Optimizer | None] = no_optimizer
    callbacks: Callable[[TrainableModel, M], list[TrainerCallback]] = no_callbacks
    mergeable: bool = True


def get_method(name: str) -> MethodStrategy[MethodConfig]:
    """The strategy of the method registered as ``name``.

    Raises:
        ConfigError: No method is registered as ``name`` (the hint names a close one, or all).
    """
    return METHODS.strategy(name)
