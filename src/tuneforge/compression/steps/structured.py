"""Structured pruning: remove key/value head groups, MLP channels or whole decoder layers, so that the saved
model is really smaller (and faster), for the Llama-shaped families (llama, mistral, qwen2, qwen3).

Importance comes from the calibration set:
    * MLP channel j: mean |input_j of down_proj| x ||down_proj[:, j]|| (its expected contribution).
    * Head group (one key/value head and the query heads that share it): the summed norms of its heads'
      attention outputs times their o_proj columns.
    * Layer: 1 - cosine(hidden in, hidden out), the block influence of ShortGPT (Men et al., 2024).
Every layer keeps the same number of heads and channels (the config has one width for all).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import PruneStep
from tuneforge.compression.stage import Stage, StepContext, count_parameters, save_transformers, step_error
from tuneforge.progress import ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def removed_count(total: int, sparsity: float) -> int:
    """How many of ``total`` units a sparsity removes (rounded)."""
    return int(round(total * sparsity))


def check_structured(step: PruneStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse a family without the Llama layout, and a sparsity that removes nothing or everything."""
    if config.model_type not in FAMILIES:
        raise step_error(f"structured pruning ({step.method}) knows the layout of {', '.join(FAMILIES)}, not "
                         f"'{config.model_type}'", context_index=index, file=file, field_name="method",
                         hint="use method: magnitude, wanda or semi_structured (they work on any linear layer)")
    units = {"heads": ("key/value head groups", config.num_key_value_heads),
             "mlp_channels": ("MLP channels", config.intermediate_size),
             "layers": ("decoder layers", config.num_hidden_layers)}[step.method]
    removed = removed_count(units[1], step.sparsity)
    if removed == 0 or removed >= units[1]:
        raise step_error(f"sparsity {step.sparsity} of {units[1]} {units[0]} removes {removed}: nothing is left "
                         "to prune or nothing is left", context_index=index, file=file, field_name="sparsity",
                         hint=f"choose a sparsity that removes between 1 and {units[1] - 1} {units[0]}")


def apply_structured(stage: Stage, step: PruneStep, context: StepContext) -> Stage:
    """Score the units on the calibration set, cut the least important, rebuild and save the model."""
    model, config = stage.model, stage.model.config.__class__.from_dict(stage.model.config.to_dict())
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    context.progress(ProgressEvent(ProgressKind.STAGE, f"prune {step.method}: scoring on {len(context.calibration)} examples"))
    if step.method == "mlp_channels":
        details = _cut_channels(model, config, state, step.sparsity, context.calibration)
    elif step.method == "heads":
        details = _cut_heads(model, config, state, step.sparsity, context.calibration)
    else:
        details = _cut_layers(model, config, state, step.sparsity, context.calibration)
    pruned = rebuild(config, state)
    before = stage.parameters
    if step.recover is not None:
        from tuneforge.compression.steps.recovery import recover

        pruned, details["recovery"] = recover(pruned, stage.tokenizer, step.recover, context)
    save_transformers(pruned, stage.tokenizer, context.workdir)
    total, nonzero = count_parameters(pruned)
    details.update(method=step.method, parameters_removed=before - total)
    return Stage(pruned.eval(), stage.tokenizer, context.workdir, f"transformers fp32, {step.method} pruned",
                 total, nonzero, ["cpu", "cuda"], details)


def rebuild(config: PretrainedConfig, state: dict[str, torch.Tensor]) -> PreTrainedModel:
    """A fresh model of ``config`` holding ``state`` (every key must fit)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _collect(model: Any, calibration: list[Any], modules: list[Any], record: Any, *, kwargs: bool = False) -> None:
    """Run the calibration set with ``record(index, module, args, kwargs, output)`` hooked on ``modules``."""
    import torch

    def hook(i: int) -> Any:
        if kwargs:
            return lambda m, args, kw, out: record(i, m, args, kw, out)
        return lambda m, args, out: record(i, m, args, {}, out)

    handles = [m.register_forward_hook(hook(i), with_kwargs=kwargs) for i, m in enumerate(modules)]
    try:
        with torch.inference_mode():
            for ids in calibration:
                model(input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()


def _cut_channels(
    model: PreTrainedModel, config: PretrainedConfig, state: dict, sparsity: float, calibration: list[torch.Tensor]
) -> dict:
    import torch

    layers = model.model.layers
    width = config.intermediate_size
    keep = width - removed_count(width, sparsity)
    if keep >= 64:
        keep -= keep % 32  # widths that 4-bit kernels and tensor cores want
    sums = [torch.zeros(width, dtype=torch.float64) for _ in layers]

    def record(i: int, module: Any, args: tuple, kw: dict, out: Any) -> None:
        sums[i] += args[0].detach().reshape(-1, width).abs().double().sum(0)  # [intermediate]

    _collect(model, calibration, [layer.mlp.down_proj for layer in layers], record)
    for i, layer in enumerate(layers):
        scores = sums[i].float() * layer.mlp.down_proj.weight.detach().norm(dim=0)  # [intermediate]
        kept = scores.topk(keep).indices.sort().values
        prefix = f"model.layers.{i}.mlp."
        for name in ("gate_proj", "up_proj"):
            _slice(state, prefix + name, rows=kept)
        _slice(state, prefix + "down_proj", cols=kept)
    config.intermediate_size = keep
    return {"intermediate_size": [width, keep]}


def _cut_heads(
    model: PreTrainedModel, config: PretrainedConfig, state: dict, sparsity: float, calibration: list[torch.Tensor]
) -> dict:
    import torch

    layers = model.model.layers
    heads, groups = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    per_group = heads // groups
    keep = groups - removed_count(groups, sparsity)
    sums = [torch.zeros(heads, dtype=torch.float64) for _ in layers]

    def record(i: int, module: Any, args: tuple, kw: dict, out: Any) -> None:
        x = args[0].detach().reshape(-1, heads, head_dim).double()  # [tokens, heads, head_dim]
        sums[i] += x.pow(2).sum((0, 2))

    _collect(model, calibration, [layer.self_attn.o_proj for layer in layers], record)
    removed = {}
    for i, layer in enumerate(layers):
        o_weight = layer.self_attn.o_proj.weight.detach().reshape(-1, heads, head_dim)  # [hidden, heads, head_dim]
        scores = sums[i].sqrt().float() * o_weight.norm(dim=(0, 2))  # [heads]
        kept = scores.reshape(groups, per_group).sum(1).topk(keep).indices.sort().values  # kv groups
        q_heads = (kept[:, None] * per_group + torch.arange(per_group)[None, :]).reshape(-1)
        q_rows, kv_rows = _head_rows(q_heads, head_dim), _head_rows(kept, head_dim)
        prefix = f"model.layers.{i}.self_attn."
        _slice(state, prefix + "q_proj", rows=q_rows)
        _slice(state, prefix + "k_proj", rows=kv_rows)
        _slice(state, prefix + "v_proj", rows=kv_rows)
        _slice(state, prefix + "o_proj", cols=q_rows)
        removed[i] = sorted(set(range(groups)) - set(kept.tolist()))
    config.num_attention_heads, config.num_key_value_heads, config.head_dim = keep * per_group, keep, head_dim
    return {"attention_heads": [heads, keep * per_group], "kv_heads": [groups, keep], "removed_groups": removed}


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    import torch

    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)


def _cut_layers(
    model: PreTrainedModel, config: PretrainedConfig, state: dict, sparsity: float, calibration: list[torch.Tensor]
) -> dict:
    import torch

    layers = model.model.layers
    similarity = [[0.0, 0] for _ in layers]

    def record(i: int, module: Any, args: tuple, kw: dict, out: Any) -> None:
        hidden_in = (args[0] if args else kw["hidden_states"]).detach()
        hidden_out = (out[0] if isinstance(out, tuple) else out).detach()
        cos = torch.nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)  # [b, t]
        similarity[i][0] += float(cos.sum())
        similarity[i][1] += cos.numel()

    _collect(model, calibration, list(layers), record, kwargs=True)
    influence = [1 - s / max(n, 1) for s, n in similarity]
    count = len(layers)
    dropped = sorted(sorted(range(count), key=lambda i: influence[i])[: removed_count(count, sparsity)])
    kept = [i for i in range(count) if i not in dropped]
    select_layers(config, state, kept)
    return {"layers": [count, len(kept)], "removed_layers": dropped,
            "block_influence": [round(x, 4) for x in influence]}


def select_layers(config: PretrainedConfig, state: dict[str, torch.Tensor], kept: list[int]) -> None:
    """Keep only decoder layers ``kept`` (renumbered from 0) in a state dict and its config."""
    pattern = re.compile(r"^model\.layers\.(\d+)\.")
    for key in list(state):
        match = pattern.match(key)
        if match:
            tensor = state.pop(key)
            old = int(match.group(1))
            if old in kept:
                state[f"model.layers.{kept.index(old)}." + key[match.end():]] = tensor
    config.num_hidden_layers = len(kept)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in kept]


def _slice(
    state: dict[str, torch.Tensor], prefix: str, *, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
) -> None:
    """Keep only ``rows`` (output features, bias too) or ``cols`` (input features) of a linear layer."""
    weight = state[prefix + ".weight"]
    state[prefix + ".weight"] = weight[rows].contiguous() if rows is not None else weight[:, cols].contiguous()
    if rows is not None and prefix + ".bias" in state:
        state[prefix + ".bias"] = state[prefix + ".bias"][rows].contiguous()
