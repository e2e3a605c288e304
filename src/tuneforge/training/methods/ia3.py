"""IA3 through PEFT: learned rescaling vectors on keys, values and feed-forward activations."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.methods import IA3Method
from tuneforge.training.methods import MethodStrategy, PrepareContext
from tuneforge.training.methods.lora import resolve_target_modules

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def prepare_ia3(model: PreTrainedModel, method: IA3Method, context: PrepareContext) -> PeftModel:
    """Wrap ``model`` with IA3 vectors ('auto': PEFT's defaults for the architecture)."""
    from peft import IA3Config, get_peft_model

    targets = None
    feedforward = None
    if method.target_modules != "auto":
        targets = resolve_target_modules(method.target_modules, model, context.model_type)
        feedforward = method.feedforward_modules or []
    return get_peft_model(
        model, IA3Config(task_type=context.task_type, target_modules=targets, feedforward_modules=feedforward)
    )


IA3: MethodStrategy[IA3Method] = MethodStrategy(trains_adapter=True, prepare=prepare_ia3)
