"""Freeze tuning: train the last N transformer blocks (and the final norm) or named modules only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.methods import FreezeMethod
from tuneforge.errors import ConfigError
from tuneforge.models.architectures import architecture_for
from tuneforge.training.methods import MethodStrategy, PrepareContext

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def transformer_blocks(model: PreTrainedModel, model_type: str) -> torch.nn.ModuleList:
    """The ``ModuleList`` of transformer blocks: from the table, else the longest ModuleList."""
    import torch

    arch = architecture_for(model_type)
    if arch is not None:
        module: object = model
        for part in arch.layers_attr.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise ConfigError(
            f"cannot find the transformer blocks of this '{model_type}' model",
            field="method.trainable_layers",
            hint="use method.trainable_modules with parameter-name substrings instead",
        )
    return max(lists, key=len)


def prepare_freeze(model: PreTrainedModel, method: FreezeMethod, context: PrepareContext) -> PreTrainedModel:
    """Freeze everything, then unfreeze the last ``trainable_layers`` blocks and named modules."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable: set[int] = set()
    if method.trainable_layers:
        blocks = transformer_blocks(model, context.model_type)
        if method.trainable_layers > len(blocks):
            raise ConfigError(
                f"trainable_layers is {method.trainable_layers} but the model has {len(blocks)} layers",
                field="method.trainable_layers",
                hint=f"use a number from 1 to {len(blocks)}, or method 'full'",
            )
        for block in list(blocks)[-method.trainable_layers :]:
            trainable.update(id(p) for p in block.parameters())
        # The final norm sits after the unfrozen blocks: 1-D parameters outside every block.
        in_blocks = {id(p) for p in blocks.parameters()}
        trainable.update(id(p) for p in model.parameters() if p.ndim == 1 and id(p) not in in_blocks)
    patterns = method.trainable_modules or []
    for name, parameter in model.named_parameters():
        if id(parameter) in trainable or any(p in name for p in patterns):
            parameter.requires_grad_(True)
    if method.trainable_modules and not any(
        any(p in name for p in method.trainable_modules) for name, _ in model.named_parameters()
    ):
        raise ConfigError(
            f"no parameter name contains any of {method.trainable_modules}",
            field="method.trainable_modules",
            hint="list substrings of parameter names, e.g. 'lm_head' or 'layers.11.mlp'",
        )
    if context.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


FREEZE: MethodStrategy[FreezeMethod] = MethodStrategy(trains_adapter=False, prepare=prepare_freeze)
