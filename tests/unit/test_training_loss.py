"""The chunked label-only LM loss equals the plain cross-entropy over full logits, in value and gradients."""

from __future__ import annotations

import pytest
import torch

from tuneforge.training.loss import label_mask, linear_cross_entropy


def plain_loss(hidden, head, targets, smoothing=0.0):
    return torch.nn.functional.cross_entropy(head(hidden).float(), targets, reduction="sum", label_smoothing=smoothing)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_loss_and_gradients_equal_the_full_logits_path(smoothing, bias):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias)
    hidden = torch.randn(37, 16, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    expected = plain_loss(hidden, head, targets, smoothing)
    grads = torch.autograd.grad(expected, [hidden, *head.parameters()])
    got = linear_cross_entropy(hidden, head, targets, chunk=8, smoothing=smoothing)  # 5 chunks, the last short
    got_grads = torch.autograd.grad(2 * got, [hidden, *head.parameters()])  # an upstream gradient is applied
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(got_grads, grads):
        torch.testing.assert_close(mine, 2 * theirs, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_loss_is_close_to_the_plain_bf16_path():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 300, bias=False)
    hidden = torch.randn(40, 64)
    targets = torch.randint(0, 300, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = plain_loss(hidden, head, targets)
        got = linear_cross_entropy(hidden, head, targets, chunk=16)
    torch.testing.assert_close(got, expected, rtol=2e-3, atol=0.0)


def test_a_wrapped_head_goes_through_checkpointed_chunks():
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(8, 20))  # not a bare nn.Linear (as a LoRA-wrapped lm_head)
    hidden = torch.randn(9, 8, requires_grad=True)
    targets = torch.randint(0, 20, (9,))
    expected, = torch.autograd.grad(plain_loss(hidden, head, targets), hidden)
    got, = torch.autograd.grad(linear_cross_entropy(hidden, head, targets, chunk=4), hidden)
    torch.testing.assert_close(got, expected)


def test_label_mask_shifts_and_skips_ignored_labels():
    hidden = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 4, 1)  # [B=2, T=4, d=1]: value = b * 4 + t
    labels = torch.tensor([[-100, -100, 7, 8], [-100, 5, -100, -100]])
    keep, targets = label_mask({"labels": labels})
    assert targets.tolist() == [7, 8, 5]
    assert hidden[keep].squeeze(1).tolist() == [1.0, 2.0, 4.0]  # the position before each label predicts it
    keep, targets = label_mask({"labels": labels, "shift_labels": torch.tensor([[3, -100, 4, -100]])})
    assert (keep.tolist(), targets.tolist()) == ([[True, False, True, False]], [3, 4])  # already shifted


def test_frozen_linear_weights_go_to_bf16_while_adapters_embeddings_and_a_tied_head_stay_fp32(tiny_model):
    from peft import LoraConfig, get_peft_model

    from tuneforge.models.loading import load_causal_lm
    from tuneforge.training.speed import cast_frozen_weights

    model = get_peft_model(load_causal_lm(tiny_model), LoraConfig(r=4, target_modules="all-linear"))
    cast = cast_frozen_weights(model, torch.bfloat16)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert cast > 0
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n or "embed_tokens" in n or "norm" in n)
    assert all(d == torch.bfloat16 for n, d in dtypes.items() if n.endswith("base_layer.weight"))
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight.dtype == (torch.float32 if tied else torch.bfloat16)
    cast_frozen_weights(model, torch.bfloat16, everything=True)  # 'compute_all': embeddings and norms too
    assert {p.dtype for n, p in model.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
