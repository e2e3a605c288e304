"""The step-level switches of ``train.speed``: attention in fp32 on CPU, adapter inputs kept in the compute dtype,
and LoRA dropout masks drawn from packed random bits.

Figures (SmolLM2-135M, LoRA r16 all-linear, batch 8 x ~100 tokens, one CPU thread, bf16 autocast) are in the
field descriptions of :class:`tuneforge.config.speed.SpeedSettings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from tuneforge.training.activation_memory import DroppedLinear, FusedLoraLinear, compute_dtype_of

if TYPE_CHECKING:
    from tuneforge.config.speed import SpeedSettings
    from tuneforge.training.precision import Precision

FP32_SDPA = "tuneforge_sdpa_fp32"  # the name of the fp32 attention in transformers' AttentionInterface
FP32_SDPA_COMPACT = "tuneforge_sdpa_fp32_compact"  # the same, its saved tensors kept in the compute dtype
MASK_BITS = 16  # random bits per dropout decision: p is rounded to a multiple of 2**-16


def attention_in_fp32(speed: SpeedSettings, precision: Precision) -> bool:
    """Whether SDPA runs in fp32 under a 16-bit compute dtype ('auto': on CPU under bf16)."""
    if speed.attention_dtype == "auto":
        return precision.device == "cpu" and precision.name == "bf16"
    return speed.attention_dtype == "fp32" and precision.name != "fp32"


def sdpa_fp32_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' SDPA attention with query, key, value (and a float mask) in fp32, the output back in the
    query's dtype. On CPU torch's flash kernel runs its backward about 4x faster in fp32 than in bf16."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    with torch.autocast(query.device.type, enabled=False):
        if attention_mask is not None and attention_mask.is_floating_point():
            attention_mask = attention_mask.float()
        output, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                                 **kwargs)
    return output.to(dtype), weights


def sdpa_fp32_compact_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                              attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """:func:`sdpa_fp32_forward` whose kernel keeps query, key, value and output for backward in the query's dtype
    (``train.speed.compact_attention``): query, key and value were in that dtype before the cast, so only the
    output's copy is rounded."""
    if query.dtype == torch.float32 or not torch.is_grad_enabled():
        return sdpa_fp32_forward(module, query, key, value, attention_mask, **kwargs)
    with torch.autograd.graph.saved_tensors_hooks(*saved_in(query)):
        return sdpa_fp32_forward(module, query, key, value, attention_mask, **kwargs)


def saved_in(query: torch.Tensor) -> tuple[Any, Any]:
    """Pack and unpack hooks that keep fp32 tensors of the query's shape (the fp32 query, the repeated key and
    value, the output) in the query's dtype while they wait for backward, and cast them back to fp32 for it."""
    dtype, shape = query.dtype, query.shape

    def pack(tensor: torch.Tensor) -> Any:
        if tensor.dtype != torch.float32 or tensor.shape != shape:
            return tensor
        return (tensor.to(dtype),)

    def unpack(packed: Any) -> torch.Tensor:
        return packed[0].float() if isinstance(packed, tuple) else packed

    return pack, unpack


def use_fp32_attention(model: Any, *, compact: bool = False) -> bool:
    """Switch a model that runs transformers' 'sdpa' attention to :func:`sdpa_fp32_forward` (``compact``:
    :func:`sdpa_fp32_compact_forward`); False when the model uses another attention (eager, flash, flex) and is
    left as it is."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    name = FP32_SDPA_COMPACT if compact else FP32_SDPA
    AttentionInterface.register(name, sdpa_fp32_compact_forward if compact else sdpa_fp32_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
    model.set_attn_implementation(name)
    return True


class PackedBitsDropout(torch.nn.Module):
    """Dropout whose keep-mask comes from 16-bit slices of 64-bit random words: four decisions per draw of the
    generator instead of torch's one Bernoulli draw per element (measured on CPU: 2.3 vs 6.7 ms for a
    [8, 100, 1536] bf16 input). On CPU the words come from numpy's SFC64 (:func:`cpu_random_words`), on other
    devices from torch's generator.

    Each element is kept with probability ``1 - p`` rounded to a multiple of 2**-16 and scaled by the inverse of
    that probability, as ``torch.nn.Dropout``; the random stream is another one (the same seed draws other masks).
    The mask is saved for the backward pass in the input's dtype, as torch's dropout saves it.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.compact = False  # with LoRA scaled at rank: DroppedLinear (1-byte mask, no dropped copy saved)
        self.threshold = round((1.0 - p) * 2**MASK_BITS)  # kept when the 16-bit draw (0 .. 65535) is below it
        self.scale = 2**MASK_BITS / self.threshold if self.threshold else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with dropped elements zeroed and the kept ones scaled (training); ``x`` itself in eval mode."""
        if not self.drops:
            return x
        return _MaskedScale.apply(x, self._keep_mask(x, self._draws(x)), self.scale)

    def masked(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the dropped elements zeroed and the kept ones left unscaled (the caller applies
        :attr:`scale`); training mode and ``p`` > 0 only."""
        return _MaskedScale.apply(x, self._keep_mask(x, self._draws(x)), 1.0)

    def keep_bytes(self, x: torch.Tensor) -> torch.Tensor:
        """The 0/1 keep-mask of ``x`` as one byte per element (``uint8``), from the same draws as :meth:`masked`
        (training mode and ``p`` > 0 only)."""
        draws = self._draws(x)
        keep = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
        return torch.lt(draws, self.threshold - 2**(MASK_BITS - 1), out=keep)

    def _draws(self, x: torch.Tensor) -> torch.Tensor:
        count = (x.numel() + 3) // 4
        if x.device.type == "cpu":
            words = cpu_random_words(count)
        else:
            words = torch.empty(count, dtype=torch.int64, device=x.device).random_(-2**63, None)
        return words.view(torch.int16)[:x.numel()].view(x.shape)  # uniform over -32768 .. 32767

    def _keep_mask(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        keep = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # 0/1 in x's dtype: no bool pass, no cast
        return torch.lt(draws, self.threshold - 2**(MASK_BITS - 1), out=keep)

    @property
    def drops(self) -> bool:
        """Whether a call drops anything (training mode, and ``p`` not rounded to 0)."""
        return self.training and self.threshold < 2**MASK_BITS

    def extra_repr(self) -> str:
        return f"p={self.p}, bits={MASK_BITS}"


def cpu_random_words(count: int) -> torch.Tensor:
    """``count`` uniform 64-bit words (``int64``) drawn on the CPU by numpy's SFC64 generator, seeded by one draw of
    torch's default generator (so ``torch.manual_seed`` and the RNG state a checkpoint saves decide them).

    torch's CPU generator (MT19937, one element at a time through its distribution code) took 646 us for the
    115k words of a [8, 100, 576] input; SFC64 takes 314 us, the seeding included (one thread, EPYC).
    """
    import numpy

    seed = int(torch.randint(0, 2**62, (1,)))
    generator = numpy.random.Generator(numpy.random.SFC64(seed))
    return torch.from_numpy(generator.integers(-2**63, 2**63 - 1, size=count, dtype=numpy.int64, endpoint=True))


class _MaskedScale(torch.autograd.Function):
    """``x * mask * scale`` with the 0/1 mask in ``x``'s dtype (exact) and the scale applied in one rounding,
    as the fp32 path rounds once when autocast casts its result back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return x.mul(mask).mul_(scale) if scale != 1.0 else x.mul(mask)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return (grad.mul(mask).mul_(ctx.scale) if ctx.scale != 1.0 else grad.mul(mask)), None, None


def use_packed_dropout(model: torch.nn.Module) -> int:
    """Replace the ``torch.nn.Dropout`` of every LoRA layer (``lora_dropout``) with :class:`PackedBitsDropout`.

    Returns:
        How many dropout modules were replaced (layers with dropout 0 keep PEFT's identity).
    """
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = PackedBitsDropout(dropout.p)
                replaced += 1
    return replaced


def use_compact_dropout(model: torch.nn.Module) -> int:
    """Make every :class:`PackedBitsDropout` of ``model`` save a one-byte mask and no dropped copy of its input
    (:class:`~tuneforge.training.activation_memory.DroppedLinear`; LoRA layers scaled at rank only).

    Returns:
        How many dropout modules were switched.
    """
    dropouts = [m for m in model.modules() if isinstance(m, PackedBitsDropout)]
    for dropout in dropouts:
        dropout.compact = True
    return len(dropouts)


class AdapterInputsInComputeDtype(TrainerCallback):
    """While training (under autocast), PEFT adapter layers take their input as it comes (bf16) instead of casting
    it to the adapter's fp32 weights; autocast casts it back to bf16 for the matmul anyway, so the numbers are the
    same with two full-size copies fewer per adapter. The cast is restored after training (saving, merging and
    generation run without autocast)."""

    def __init__(self, model: torch.nn.Module) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        self.layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for layer in self.layers:
            layer.cast_input_dtype_enabled = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        for layer in self.layers:
            layer.cast_input_dtype_enabled = True


def use_scale_at_rank(model: torch.nn.Module) -> int:
    """Make every plain LoRA ``Linear`` layer a :class:`LoraLinearScaledAtRank` (in place: its class is swapped).

    Returns:
        How many layers were switched (DoRA and other variants, LoRA biases and other layer types keep PEFT's).
    """
    from peft.tuners.lora.layer import Linear as LoraLinear

    switched = 0
    for module in model.modules():
        if type(module) is LoraLinear and not module.lora_variant and not any(module.lora_bias.values()):
            module.__class__ = _scaled_at_rank_class()
            switched += 1
    return switched


def use_fused_lora(model: torch.nn.Module) -> int:
    """Make every :class:`LoraLinearScaledAtRank` layer of ``model`` compute its forward as one
    :class:`~tuneforge.training.activation_memory.FusedLoraLinear` where that applies (a plain frozen base in the
    compute dtype; other calls keep the unfused path).

    Returns:
        How many layers were switched.
    """
    scaled = LoraLinearScaledAtRank
    layers = [m for m in model.modules() if scaled is not None and isinstance(m, scaled)]
    for layer in layers:
        layer.fused = True
    return len(layers)


def _scaled_at_rank_class() -> type:
    """:class:`LoraLinearScaledAtRank`, defined on first use (PEFT is imported only by runs that train adapters)."""
    global LoraLinearScaledAtRank
    if LoraLinearScaledAtRank is None:
        from peft.tuners.lora.layer import Linear as LoraLinear

        class ScaledAtRank(LoraLinear):
            forward = lora_forward_scaled_at_rank
            fused = False  # :func:`use_fused_lora`: the forward is one FusedLoraLinear where it applies

        ScaledAtRank.__name__ = ScaledAtRank.__qualname__ = "LoraLinearScaledAtRank"
        ScaledAtRank.__module__ = __name__
        LoraLinearScaledAtRank = ScaledAtRank
    return LoraLinearScaledAtRank


LoraLinearScaledAtRank: type | None = None  # PEFT's LoRA Linear with :func:`lora_forward_scaled_at_rank`


def lora_forward_scaled_at_rank(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """PEFT's LoRA ``Linear`` forward, ``base(x) + B(A(dropout(x)) * s)``, with the scaling ``s`` (alpha / r, times
    the dropout's 1 / (1 - p) for :class:`PackedBitsDropout`) applied to the rank-r state instead of the full-width
    output (and input): the same product, rounded elsewhere. Merged, disabled, several active adapters or extra
    arguments: PEFT's own forward."""
    names = self.active_adapters
    if args or kwargs or self.merged or self.disable_adapters or len(names) != 1 or names[0] not in self.lora_A:
        return super(type(self), self).forward(x, *args, **kwargs)
    name = names[0]
    lora_a, lora_b, dropout, scale = self.lora_A[name], self.lora_B[name], self.lora_dropout[name], self.scaling[name]
    base = self.base_layer
    if self.fused and _fusable(base, x, lora_a, lora_b):
        keep = None
        if isinstance(dropout, PackedBitsDropout) and dropout.drops:
            scale, keep = scale * dropout.scale, dropout.keep_bytes(x)
        elif dropout.training and getattr(dropout, "p", 0) > 0:  # a dropout of another kind
            return _plain_scaled_at_rank(self, x, lora_a, lora_b, dropout, scale)
        return FusedLoraLinear.apply(x, base.weight, base.bias, lora_a.weight, lora_b.weight, keep, scale)
    return _plain_scaled_at_rank(self, x, lora_a, lora_b, dropout, scale)


def _fusable(base: torch.nn.Module, x: torch.Tensor, lora_a: torch.nn.Module, lora_b: torch.nn.Module) -> bool:
    """Whether :class:`FusedLoraLinear` computes this call: a plain frozen ``nn.Linear`` base stored in the dtype its
    matmul runs in (not a quantized one), no adapter biases."""
    return (type(base) is torch.nn.Linear and not base.weight.requires_grad and lora_a.bias is None
            and lora_b.bias is None and base.weight.dtype == x.dtype == compute_dtype_of(x)
            and (base.bias is None or (base.bias.dtype == x.dtype and not base.bias.requires_grad)))


def _plain_scaled_at_rank(self: Any, x: torch.Tensor, lora_a: torch.nn.Module, lora_b: torch.nn.Module,
                          dropout: torch.nn.Module, scale: float) -> torch.Tensor:
    result = self.base_layer(x)
    x = self._cast_input_dtype(x, lora_a.weight.dtype)
    if isinstance(dropout, PackedBitsDropout) and dropout.drops:
        scale = scale * dropout.scale
        if dropout.compact and lora_a.bias is None and compute_dtype_of(x) == x.dtype:
            state = DroppedLinear.apply(x, dropout.keep_bytes(x), lora_a.weight)
            return (result + lora_b(state * scale)).to(result.dtype)
        x = dropout.masked(x)
    else:
        x = dropout(x)
    return (result + lora_b(lora_a(x) * scale)).to(result.dtype)
