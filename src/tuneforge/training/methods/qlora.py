"""QLoRA: LoRA on a base model quantized by bitsandbytes (4-bit NF4/FP4 or 8-bit)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from tuneforge.config.methods import QloraMethod
from tuneforge.errors import MissingDependencyError
from tuneforge.training.methods import MethodStrategy, PrepareContext
from tuneforge.training.methods.lora import loraplus_optimizer, prepare_lora

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedModel


def quantization(method: QloraMethod, compute_dtype: torch.dtype) -> BitsAndBytesConfig:
    """The ``BitsAndBytesConfig`` that loads the base model quantized."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise MissingDependencyError("bitsandbytes", extra="qlora", purpose="method 'qlora'") from None
    from transformers import BitsAndBytesConfig

    if method.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method.quant_type,
        bnb_4bit_use_double_quant=method.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def prepare_qlora(model: PreTrainedModel, method: QloraMethod, context: PrepareContext) -> PeftModel:
    """Ready a quantized model for training (norms in fp32, input grads), then add LoRA adapters."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=context.gradient_checkpointing)
    return prepare_lora(model, method, replace(context, gradient_checkpointing=False))


QLORA: MethodStrategy[QloraMethod] = MethodStrategy(
    trains_adapter=True, prepare=prepare_qlora, quantization=quantization, optimizer=loraplus_optimizer
)
