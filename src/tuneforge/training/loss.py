"""The LM head and cross-entropy on the label positions only, chunked so the ``[tokens, vocab]`` logits never exist.

The plain path computes logits for every position of a padded batch (``B x T x V`` floats, three times that with
their gradients) and then ignores most of them (prompt and padding carry label -100). Here the model gives the
hidden states at the positions with a label (``logits_to_keep``), and each chunk of them goes through the head and the
cross-entropy with the gradient computed in the same pass (the idea behind Liger's fused linear cross-entropy;
Liger itself is used on CUDA when it is installed).
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE = -100


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum of the cross-entropies of ``hidden @ weight.T + bias`` against ``targets``, chunk by chunk.

    Forward computes the loss and the gradients together (each chunk's logits are freed before the next), so
    backward only scales them: peak extra memory is a few ``chunk x vocab`` fp32 buffers.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,  # noqa: D102
                targets: torch.Tensor, chunk: int, smoothing: float) -> torch.Tensor:
        # hidden [N, d], weight [V, d], bias [V] | None, targets [N]
        need_w, need_b = ctx.needs_input_grad[1], bias is not None and ctx.needs_input_grad[2]
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk):
                h, y = hidden[start:start + chunk], targets[start:start + chunk]
                logits = (h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)).float()  # [c, V]
                total += _chunk_loss(logits, y, smoothing)
                grad = _chunk_grad(logits, y, smoothing)  # d(sum loss)/d logits, [c, V] fp32
                grad_h[start:start + chunk] = (grad.to(weight.dtype) @ weight).to(hidden.dtype)
                if need_w:
                    grad_w.addmm_(grad.T, h.float())
                if need_b:
                    grad_b += grad.sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # noqa: D102
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = lambda g, like: None if g is None else (g * grad_out).to(like.dtype)  # noqa: E731
        return grad_h * grad_out.to(grad_h.dtype), scale(grad_w, grad_out), scale(grad_b, grad_out), None, None, None


def _chunk_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    # PyTorch's label smoothing: (1 - e) * nll + e * mean over the vocabulary of -log p
    lse = torch.logsumexp(logits, dim=-1)  # [c]
    nll = lse - logits.gather(1, targets[:, None]).squeeze(1)
    if not smoothing:
        return nll.sum()
    return ((1 - smoothing) * nll + smoothing * (lse - logits.mean(-1))).sum()


def _chunk_grad(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    grad = torch.softmax(logits, dim=-1)  # [c, V]
    if smoothing:
        grad -= smoothing / logits.shape[1]
    grad[torch.arange(len(targets), device=grad.device), targets] -= 1 - smoothing
    return grad


def linear_cross_entropy(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, *, chunk: int,
                         smoothing: float = 0.0) -> torch.Tensor:
    """Sum over rows of the cross-entropy of ``head(hidden)`` against ``targets``, without full logits.

    Args:
        hidden: ``[N, d]`` hidden states at the label positions.
        head: The output embedding (an ``nn.Linear``; another module is called chunk by chunk under checkpointing).
        targets: ``[N]`` token ids.
        chunk: Rows per chunk.
        smoothing: Label smoothing factor.

    Returns:
        The summed loss (a scalar, fp32).
    """
    if type(head) is not torch.nn.Linear:  # a wrapped head (LoRA on lm_head): recompute its chunks in backward
        return _checkpointed(hidden, head, targets, chunk=chunk, smoothing=smoothing)
    dtype = _compute_dtype(hidden)
    fused = _liger_loss(hidden.device, smoothing)
    weight = head.weight.to(dtype)
    bias = None if head.bias is None else head.bias.to(dtype)
    if fused is not None:
        return fused(weight, hidden.to(dtype), targets, bias)
    return ChunkedLinearCrossEntropy.apply(hidden.to(dtype), weight, bias, targets, chunk, smoothing)


def _checkpointed(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, *, chunk: int,
                  smoothing: float) -> torch.Tensor:
    from torch.utils.checkpoint import checkpoint

    def piece(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(head(h).float(), y, reduction="sum", label_smoothing=smoothing)

    parts = [checkpoint(piece, hidden[i:i + chunk], targets[i:i + chunk], use_reentrant=False)
             for i in range(0, hidden.shape[0], chunk)]
    return torch.stack(parts).sum()


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    kind = hidden.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype


def _liger_loss(device: torch.device, smoothing: float) -> Any:
    """Liger's fused linear cross-entropy (sum reduction) on CUDA when ``liger-kernel`` is installed, else None."""
    if device.type != "cuda":
        return None
    try:
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, label_smoothing=smoothing, reduction="sum")


def label_mask(inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose logits predict a label (``[B, T]`` bool), and those labels in row-major order ``[N]``.

    ``labels`` are shifted (position t predicts label t + 1); a flattening collator's ``shift_labels`` already are.
    """
    if "shift_labels" in inputs:
        shifted = inputs["shift_labels"]
    else:
        labels = inputs["labels"]
        shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
    keep = shifted != IGNORE
    return keep, shifted[keep]
