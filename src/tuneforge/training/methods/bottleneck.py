"""Bottleneck adapters where Houlsby puts them: beside each block's attention and feed-forward outputs.

PEFT has no Houlsby adapter (AdapterHub's ``adapters`` package pins transformers 4). Its closest
equivalent is a parallel adapter (He et al., 2022, "Towards a Unified View of Parameter-Efficient
Transfer Learning"): ``h + s * up(down(x))`` on the sublayer's output projection, which is PEFT's LoRA
layer with rank = bottleneck width and ``alpha = s * size``. Without the nonlinearity it stays linear,
so the adapter reloads with plain PEFT and merges into the base weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.methods import BottleneckMethod
from tuneforge.training.methods import MethodStrategy, PrepareContext
from tuneforge.training.methods.lora import table_row

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel


def bottleneck_targets(model_type: str) -> list[str]:
    """The output projections of attention and feed-forward sublayers, from the architecture table."""
    arch = table_row(model_type, lacking="its block outputs are unknown", field="method.name",
                     hint="use method lora with target_modules set to the attention and MLP output projections")
    return list(arch.block_outputs)


def prepare_bottleneck(model: PreTrainedModel, method: BottleneckMethod, context: PrepareContext) -> PeftModel:
    """Wrap ``model`` with a bottleneck adapter on every attention and feed-forward output projection."""
    from peft import LoraConfig, get_peft_model

    if context.gradient_checkpointing:
        model.enable_input_require_grads()
    config = LoraConfig(
        r=method.size,
        lora_alpha=method.scaling * method.size,  # PEFT scales by alpha / r: this makes it `scaling`
        lora_dropout=method.dropout,
        target_modules=bottleneck_targets(context.model_type),
        task_type=context.task_type,
    )
    return get_peft_model(model, config)


BOTTLENECK: MethodStrategy[BottleneckMethod] = MethodStrategy(trains_adapter=True, prepare=prepare_bottleneck)
