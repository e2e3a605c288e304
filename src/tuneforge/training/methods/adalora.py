"""AdaLoRA through PEFT: ranks are reallocated by importance while training."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneforge.config.methods import AdaLoraMethod
from tuneforge.errors import ConfigError
from tuneforge.training.methods import MethodStrategy, PrepareContext
from tuneforge.training.methods.lora import resolve_target_modules

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments


def prepare_adalora(model: PreTrainedModel, method: AdaLoraMethod, context: PrepareContext) -> PeftModel:
    """Wrap ``model`` with AdaLoRA adapters scheduled over the run's ``total_steps``."""
    from peft import AdaLoraConfig, get_peft_model

    tinit, tfinal = math.ceil(method.tinit * context.total_steps), math.ceil(method.tfinal * context.total_steps)
    if context.total_steps - tinit - tfinal < 1:
        raise ConfigError(
            f"AdaLoRA needs steps between tinit and tfinal, but the run has only {context.total_steps} steps",
            field="method.tinit",
            hint="train for more steps, or lower method.tinit and method.tfinal",
        )
    config = AdaLoraConfig(
        task_type=context.task_type,
        init_r=method.init_r,
        target_r=method.target_r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=resolve_target_modules(method.target_modules, model, context.model_type),
        total_step=context.total_steps,
        tinit=tinit,
        tfinal=tfinal,
    )
    return get_peft_model(model, config)


class RankAllocator(TrainerCallback):
    """Calls AdaLoRA's ``update_and_allocate`` after each optimizer step, while gradients still exist."""

    def __init__(self, model: PeftModel) -> None:
        self.model = model

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.model.base_model.update_and_allocate(state.global_step)


def rank_allocator(model: PeftModel, method: AdaLoraMethod) -> list[TrainerCallback]:
    """AdaLoRA's Trainer callback."""
    return [RankAllocator(model)]


ADALORA: MethodStrategy[AdaLoraMethod] = MethodStrategy(
    trains_adapter=True, prepare=prepare_adalora, callbacks=rank_allocator
)
