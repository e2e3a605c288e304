"""LoRA and DoRA through PEFT."""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from tuneforge.config.base import TargetModules
from tuneforge.config.methods import DoraMethod, LoraMethod, QloraMethod
from tuneforge.errors import ConfigError
from tuneforge.models.architectures import Architecture, architecture_for
from tuneforge.training.methods import MethodStrategy, PrepareContext

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel

    from tuneforge.config.models import TrainSettings

LoraFamily = Union[LoraMethod, DoraMethod, QloraMethod]


def table_row(model_type: str, *, lacking: str, field: str, hint: str) -> Architecture:
    """The architecture table's row for ``model_type``, or a ConfigError saying what is ``lacking`` without it."""
    arch = architecture_for(model_type)
    if arch is None:
        raise ConfigError(f"the architecture '{model_type}' is not in tuneforge's table, so {lacking}",
                          field=field, hint=hint)
    return arch


def resolve_target_modules(
    target_modules: TargetModules, model: torch.nn.Module, model_type: str
) -> str | list[str]:
    """Turn ``auto`` / ``all-linear`` / a list into what PEFT takes, checking a list against the model."""
    if target_modules == "all-linear":
        return "all-linear"
    if target_modules == "auto":
        arch = table_row(model_type, lacking="'auto' has no target modules", field="method.target_modules",
                         hint="set target_modules: all-linear, or list module names (see 'tuneforge models')")
        return list(arch.lora_targets)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [t for t in target_modules if t not in names and not any(n.endswith(t) for n, _ in model.named_modules())]
    if unknown:
        raise ConfigError(
            f"target module '{unknown[0]}' is not in the model",
            field="method.target_modules",
            hint="use module names such as " + ", ".join(sorted(_linear_names(model))[:12]),
        )
    return list(target_modules)


def _linear_names(model: torch.nn.Module) -> set[str]:
    import torch

    return {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def peft_lora_config(
    method: LoraFamily, model: torch.nn.Module, model_type: str, *, task_type: str = "CAUSAL_LM"
) -> LoraConfig:
    """The ``peft.LoraConfig`` for a lora / dora / qlora method block."""
    from peft import LoraConfig

    init = {"default": True, "gaussian": "gaussian"}.get(method.init, method.init)
    return LoraConfig(
        init_lora_weights=init,
        r=method.r,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout,
        target_modules=resolve_target_modules(method.target_modules, model, model_type),
        use_rslora=method.rslora,
        use_dora=method.name == "dora",
        modules_to_save=method.modules_to_save,
        target_parameters=method.target_parameters,
        task_type=task_type,
    )


def prepare_lora(model: PreTrainedModel, method: LoraFamily, context: PrepareContext) -> PeftModel:
    """Wrap ``model`` in a PEFT model with LoRA (or DoRA) adapters."""
    from peft import get_peft_model

    if context.gradient_checkpointing:
        model.enable_input_require_grads()  # so checkpointed blocks see a grad-requiring input
    config = peft_lora_config(method, model, context.model_type, task_type=context.task_type)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        if "lora_dropout" not in str(exc):
            raise
        # PEFT adapts fused MoE experts (3-D parameters, transformers 5) through ParamWrapper, which has no dropout
        raise ConfigError(
            f"method.dropout is {method.dropout}, but the targets reach this model's fused expert parameters, "
            "which PEFT adapts only without dropout",
            field="method.dropout",
            hint="set method.dropout: 0, or set target_modules to the attention only (target_modules: auto)",
        ) from None


def loraplus_optimizer(
    model: PeftModel, method: LoraFamily, train: TrainSettings
) -> torch.optim.Optimizer | None:
    """LoRA+: AdamW with B matrices at ``loraplus_lr_ratio`` times the learning rate (None when unset)."""
    if not method.loraplus_lr_ratio:
        return None
    import torch
    from peft.optimizers import create_loraplus_optimizer

    return create_loraplus_optimizer(
        model=model,
        optimizer_cls=torch.optim.AdamW,
        lr=train.learning_rate,
        loraplus_lr_ratio=method.loraplus_lr_ratio,
        weight_decay=train.weight_decay,
    )


LORA: MethodStrategy[LoraFamily] = MethodStrategy(trains_adapter=True, prepare=prepare_lora, optimizer=loraplus_optimizer)
