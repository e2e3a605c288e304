"""Full fine-tuning: every parameter trains."""

from __future__ import annotations

from typing import Any

from tuneforge.training.methods import MethodStrategy, PrepareContext, register


def prepare_full(model: Any, method: Any, context: PrepareContext) -> Any:
    """Make every parameter trainable."""
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


register(MethodStrategy("full", trains_adapter=False, prepare=prepare_full))
