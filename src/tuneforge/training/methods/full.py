"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneforge.config.methods import FullMethod
from tuneforge.training.methods import MethodStrategy, PrepareContext

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def prepare_full(model: PreTrainedModel, method: FullMethod, context: PrepareContext) -> PreTrainedModel:
    """Make every parameter trainable."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


FULL: MethodStrategy[FullMethod] = MethodStrategy(trains_adapter=False, prepare=prepare_full)
