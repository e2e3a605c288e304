"""Prune step: unstructured (magnitude, Wanda) and 2:4 semi-structured sparsity, through torch.nn.utils.prune.

Pruned weights are set to zero for good (``prune.remove``); the saved model keeps its shapes. Structured
pruning, which removes heads, channels or layers, is in :mod:`tuneforge.compression.steps.structured`.
Wanda (Sun et al., 2023) scores a weight by ``|w| * ||x||``, the norm of its input feature over the
calibration tokens, and prunes each output row separately; here the activations come from one pass over the
dense model (not layer by layer).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import PruneStep
from tuneforge.compression.stage import (
    Stage,
    StepContext,
    StepStrategy,
    count_parameters,
    save_transformers,
    step_error,
)
from tuneforge.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

STRUCTURED = {"heads", "mlp_channels", "layers"}


def check(step: PruneStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse a 2:4 pattern on a width that is not a multiple of 4, and structured pruning it cannot do."""
    if step.method in STRUCTURED:
        from tuneforge.compression.steps.structured import check_structured

        check_structured(step, config, index=index, file=file)
        return
    if step.method == "semi_structured":
        widths = {name: getattr(config, name, None) for name in ("hidden_size", "intermediate_size")}
        heads, head_dim = getattr(config, "num_attention_heads", None), getattr(config, "head_dim", None)
        if heads and head_dim:
            widths["num_attention_heads x head_dim"] = heads * head_dim
        odd = {k: v for k, v in widths.items() if isinstance(v, int) and v % 4}
        if odd:
            raise step_error(f"2:4 sparsity keeps 2 of every 4 input weights, but these widths are not multiples "
                             f"of 4: {odd}", context_index=index, file=file, field_name="method",
                             hint="use method: magnitude or wanda (unstructured) for this model")


def linear_layers(model: torch.nn.Module, skip: list[str]) -> Iterator[tuple[str, torch.nn.Linear]]:
    """(name, module) of every prunable ``nn.Linear`` (those not named in ``skip``)."""
    import torch

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(name == s or name.endswith("." + s) for s in skip):
            yield name, module


def input_norms(
    model: torch.nn.Module, layers: list[tuple[str, torch.nn.Linear]], calibration: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The L2 norm of each input feature of each layer over all calibration tokens: ``{name: [in]}``."""
    import torch

    sums = {name: torch.zeros(module.in_features, dtype=torch.float64) for name, module in layers}

    def hook(name: str) -> Any:
        def record(module: Any, args: tuple[Any, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # [tokens, in]
            sums[name] += x.pow(2).sum(0).cpu()
        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers]
    try:
        with torch.inference_mode():
            for ids in calibration:
                model(input_ids=ids.to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: s.sqrt().float() for name, s in sums.items()}


def keep_mask(scores: torch.Tensor, *, sparsity: float, semi_structured: bool) -> torch.Tensor:
    """1 for weights to keep: the top (1 - sparsity) of each row, or the top 2 of every 4 inputs (2:4)."""
    import torch

    out_features, in_features = scores.shape
    if semi_structured:
        groups = scores.reshape(out_features, in_features // 4, 4)  # [out, in/4, 4]
        top = groups.topk(2, dim=-1).indices
        return torch.zeros_like(groups).scatter_(-1, top, 1.0).reshape(out_features, in_features)
    drop = int(in_features * sparsity)
    mask = torch.ones_like(scores)
    if drop:
        mask.scatter_(1, scores.topk(drop, dim=1, largest=False).indices, 0.0)
    return mask


def apply(stage: Stage, step: PruneStep, context: StepContext) -> Stage:
    """Zero the pruned weights, optionally fine-tune to recover, and save the model."""
    if step.method in STRUCTURED:
        from tuneforge.compression.steps.structured import apply_structured

        return apply_structured(stage, step, context)
    from torch.nn.utils import prune

    model = stage.model
    layers = list(linear_layers(model, step.skip_modules))
    wanda = step.method == "wanda" or (step.method == "semi_structured" and step.score == "wanda")
    norms = input_norms(model, layers, context.calibration) if wanda else {}
    masks = {}
    for i, (name, module) in enumerate(layers):
        weight = module.weight.detach().abs().float()  # [out, in]
        scores = weight * norms[name][None, :] if wanda else weight
        if step.method == "magnitude":
            prune.l1_unstructured(module, "weight", amount=step.sparsity)
        else:
            prune.custom_from_mask(module, "weight",
                                   keep_mask(scores, sparsity=step.sparsity,
                                             semi_structured=step.method == "semi_structured"))
        masks[name] = module.weight_mask.detach().clone().bool()
        prune.remove(module, "weight")  # the zeros become the weight itself
        context.progress(ProgressEvent(ProgressKind.STEP, f"prune {step.method}", step=i + 1, total=len(layers)))
    details: dict[str, Any] = {"method": step.method, "layers_pruned": len(layers)}
    if step.recover is not None:
        from tuneforge.compression.steps.recovery import recover

        model, details["recovery"] = recover(model, stage.tokenizer, step.recover, context)
        reapply_masks(model, masks)
    pruned = sum(int((~m).sum()) for m in masks.values())
    in_layers = sum(m.numel() for m in masks.values())
    details["sparsity_of_pruned_layers"] = round(pruned / in_layers, 4)
    save_transformers(model, stage.tokenizer, context.workdir)
    total, nonzero = count_parameters(model)
    details["sparsity_of_model"] = round(1 - nonzero / total, 4)
    if step.method == "semi_structured":
        details["note"] = "2:4 pattern stored dense; torch.sparse.to_sparse_semi_structured runs it on CUDA (fp16)"
    return Stage(model, stage.tokenizer, context.workdir, f"transformers fp32, {step.method} sparse", total, nonzero,
                 ["cpu", "cuda"], details)


def reapply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero again the weights that pruning removed (a merged LoRA update or a full fine-tune fills them)."""
    import torch

    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            modules[name].weight.mul_(mask.to(modules[name].weight.dtype))


PRUNE: StepStrategy[PruneStep] = StepStrategy(check, apply)
