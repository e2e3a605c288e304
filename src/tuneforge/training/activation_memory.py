"""Autograd functions that keep fewer or smaller tensors for the backward pass (``train.speed.compact_dropout``).

Measured on SmolLM2-135M (LoRA r16 all-linear, dropout 0.05, batch 8 x 104 tokens, bf16): the tensors a step saves
for backward came to 1,248 MiB, of which 470 MiB were LoRA dropout's: a 16-bit keep-mask and a dropped copy of the
input for each of the 7 adapted layers of a decoder layer (the frozen layers save no input).
"""

from __future__ import annotations

from typing import Any

import torch


class DroppedLinear(torch.autograd.Function):
    """``(x * keep) @ weight.T`` in ``x``'s dtype, saving ``x`` and the one-byte ``keep`` mask only.

    ``x`` is the adapted layer's input, one tensor for the sibling adapters that read it (q/k/v, gate/up), so it is
    kept once where each adapter kept its own dropped copy; the copy is recomputed in backward for the weight's
    gradient. The numbers are those of
    ``torch.nn.functional.linear(x * keep, weight.to(x.dtype))`` under autocast: a product by a 0/1 mask is exact,
    and the weight's gradient is cast back to its dtype as autocast's cast does.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x, keep, weight)
        with torch.autocast(x.device.type, enabled=False):
            return torch.nn.functional.linear(x * keep, weight.to(x.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        x, keep, weight = ctx.saved_tensors
        grad_x = grad_w = None
        with torch.autocast(x.device.type, enabled=False):
            grad = grad.to(x.dtype)
            if ctx.needs_input_grad[0]:
                grad_x = (grad @ weight.to(x.dtype)).mul_(keep)
            if ctx.needs_input_grad[2]:
                dropped = (x * keep).reshape(-1, x.shape[-1])
                grad_w = (grad.reshape(-1, grad.shape[-1]).T @ dropped).to(weight.dtype)
        return grad_x, None, grad_w


class FusedLoraLinear(torch.autograd.Function):
    """A LoRA layer's whole forward, ``x @ W.T + bias + ((x * keep) @ A.T * s) @ B.T``, as one autograd node
    (``train.speed.fused_lora``), in ``x``'s dtype (the compute dtype; ``W`` stored in it).

    The adapter's product is added into the base output by the matmul itself (``addmm_``) rather than by a
    full-width add, and backward adds the adapter's input gradient into the base's the same way
    (``addmm_`` / ``addcmul_``), where autograd summed the two branches' gradients with another full-width pass.
    Saved for backward: ``x`` (shared with sibling layers), the one-byte ``keep`` mask and the ``[tokens, r]``
    rank state; the dropped input is recomputed for ``A``'s gradient, as :class:`DroppedLinear` does. The frozen
    ``W`` and ``bias`` get no gradient; ``A`` and ``B`` get theirs in their own dtype, as autocast's casts do.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
                lora_b: torch.Tensor, keep: torch.Tensor | None, scale: float) -> torch.Tensor:  # noqa: D102
        dtype, shape = x.dtype, x.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, shape[-1])
            state = (_dropped(flat, keep) @ lora_a.to(dtype).T).mul_(scale)
            out = flat @ weight.T if bias is None else torch.addmm(bias, flat, weight.T)
            out.addmm_(state, lora_b.to(dtype).T)
        ctx.save_for_backward(x, keep, state, weight, lora_a, lora_b)
        ctx.scale = scale
        return out.view(*shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        x, keep, state, weight, lora_a, lora_b = ctx.saved_tensors
        dtype = x.dtype
        grad_x = grad_a = grad_b = None
        with torch.autocast(x.device.type, enabled=False):
            flat_grad = grad.reshape(-1, grad.shape[-1]).to(dtype)
            flat = x.reshape(-1, x.shape[-1])
            a = lora_a.to(dtype)
            grad_state = (flat_grad @ lora_b.to(dtype)).mul_(ctx.scale)
            if ctx.needs_input_grad[4]:
                grad_b = (flat_grad.T @ state).to(lora_b.dtype)
            if ctx.needs_input_grad[3]:
                grad_a = (grad_state.T @ _dropped(flat, keep)).to(lora_a.dtype)
            if ctx.needs_input_grad[0]:
                grad_x = flat_grad @ weight.to(dtype)
                if keep is None:
                    grad_x.addmm_(grad_state, a)
                else:
                    grad_x.addcmul_(grad_state @ a, keep.reshape(flat.shape))
                grad_x = grad_x.view(x.shape)
        return grad_x, None, None, grad_a, grad_b, None, None


def _dropped(flat: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``flat`` (``[tokens, features]``) with the dropout's ``keep`` mask applied (``flat`` itself without one)."""
    return flat if keep is None else flat * keep.reshape(flat.shape)


def compute_dtype_of(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul of ``x`` runs in: autocast's where it is on, else ``x``'s own."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


class RMSNormFunction(torch.autograd.Function):
    """Llama's RMSNorm, ``weight * (x * rsqrt(mean(x^2) + eps)).to(x.dtype)`` computed in fp32, saving ``x`` (in its
    own dtype) and the ``[..., 1]`` fp32 reciprocal root instead of an fp32 copy of ``x``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # noqa: D102
        with torch.autocast(x.device.type, enabled=False):
            wide = x.float()
            rstd = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
            out = weight * (wide * rstd).to(x.dtype)
        ctx.save_for_backward(x, weight, rstd)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        x, weight, rstd = ctx.saved_tensors
        grad_x = grad_w = None
        with torch.autocast(x.device.type, enabled=False):
            wide = x.float()
            if ctx.needs_input_grad[0]:
                grad_normed = (grad * weight).float()
                mean = (grad_normed * wide).mean(-1, keepdim=True)
                grad_x = (grad_normed * rstd - wide * (rstd.pow(3) * mean)).to(x.dtype)
            if ctx.needs_input_grad[1]:
                normed = (wide * rstd).to(x.dtype)
                grad_w = (grad * normed).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)
        return grad_x, grad_w, None


class SiluMul(torch.autograd.Function):
    """``silu(gate) * up`` (SwiGLU's product) saving ``gate`` and ``up`` only; ``silu(gate)`` is recomputed in
    backward. The numbers are those of the two torch ops."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(gate, up)
        with torch.autocast(gate.device.type, enabled=False):
            return torch.nn.functional.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        gate, up = ctx.saved_tensors
        with torch.autocast(gate.device.type, enabled=False):
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
            grad_up = grad * torch.nn.functional.silu(gate) if ctx.needs_input_grad[1] else None
        return grad_gate, grad_up


# Norm classes whose forward is exactly Llama's RMSNorm (fp32 statistics, cast back, then times the weight).
LLAMA_NORMS = ("LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm", "Qwen3RMSNorm")
SWIGLU_MLPS = ("LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP")  # down(act(gate(x)) * up(x))


def _rms_norm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return RMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon)


def _swiglu_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SiluMul.apply(self.gate_proj(x), self.up_proj(x)))


def use_lean_blocks(model: torch.nn.Module) -> int:
    """Give the Llama-family RMSNorms and SiLU MLPs of ``model`` the forwards of :class:`RMSNormFunction` and
    :class:`SiluMul` (per instance; other architectures are left as they are).

    Hub kernels are released first (:func:`release_hub_kernels`): transformers would otherwise put the norms'
    class forward back at the next ``train()`` / ``eval()``.

    Returns:
        How many modules were switched.
    """
    import types

    release_hub_kernels(model)
    switched = 0
    for module in model.modules():
        name = type(module).__name__
        if name in LLAMA_NORMS and hasattr(module, "variance_epsilon"):
            module.forward = types.MethodType(_rms_norm_forward, module)
        elif name in SWIGLU_MLPS and type(getattr(module, "act_fn", None)).__name__ in ("SiLUActivation", "SiLU"):
            module.forward = types.MethodType(_swiglu_forward, module)
        else:
            continue
        switched += 1
    return switched


def release_hub_kernels(model: torch.nn.Module) -> int:
    """Turn off transformers' hub-kernel layer replacement on the models inside ``model``.

    transformers 5 loads every model with ``use_kernels`` on when the ``kernels`` package is installed (it is one of
    its requirements): each ``train()`` / ``eval()`` then re-kernelizes, which, for a layer the hub has no kernel
    for here (offline, or none for this device), pops the instance's ``forward`` and runs the class's again. That
    silently undid the lean RMSNorm of every layer in training. tuneforge downloads nothing at run time, so these
    kernels are never fetched; the shells also set ``USE_HUB_KERNELS=NO``
    (:data:`tuneforge.settings.QUIET_ENVIRONMENT`).

    Returns:
        How many models had kernels on.
    """
    released = 0
    for module in model.modules():
        if hasattr(module, "reset_kernels") and getattr(module, "use_kernels", False) is True:
            module.use_kernels = False  # transformers' setter: reset_kernels(), and no re-kernelizing on train()
            released += 1
    return released
