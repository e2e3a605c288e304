"""The autograd functions that save less for backward give the same numbers as the paths they replace."""

from __future__ import annotations

import copy

import pytest
import torch


def saved_bytes(run, model: torch.nn.Module | None = None) -> int:
    """Bytes of the distinct storages autograd saves while ``run()`` builds its graph (not counting ``model``'s
    parameters, which are kept anyway); ``run``'s result too."""
    storages: dict[int, int] = {}
    kept = {p.untyped_storage().data_ptr() for p in model.parameters()} if model is not None else set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    return sum(storages.values()), result


def lora_model(tiny_model: str) -> torch.nn.Module:
    """A tiny Llama in fp32 with LoRA (dropout 0.1, packed, scaled at rank), its B initialised (not zero), adapter
    inputs taken as they come; in training mode."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.training.speed_kernels import use_packed_dropout, use_scale_at_rank

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    for module in model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
            module.cast_input_dtype_enabled = False
    use_packed_dropout(model)
    use_scale_at_rank(model)
    return model.train()


@pytest.fixture
def bf16_lora(tiny_model):
    """A tiny Llama with LoRA (dropout 0.1, packed, scaled at rank), frozen weights bf16, adapter inputs bf16."""
    from tuneforge.training.speed import cast_frozen_weights

    model = lora_model(tiny_model)
    cast_frozen_weights(model, torch.bfloat16, everything=True)
    return model


def test_compact_dropout_gives_the_same_loss_and_gradients_and_saves_less(bf16_lora):
    from tuneforge.training.speed_kernels import use_compact_dropout

    compact = copy.deepcopy(bf16_lora)
    assert use_compact_dropout(compact) == sum(1 for m in compact.modules() if hasattr(m, "lora_B")) > 0
    ids = torch.randint(0, 200, (4, 48))
    results = []
    for model in (bf16_lora, compact):
        torch.manual_seed(3)  # the same dropout draws
        with torch.autocast("cpu", dtype=torch.bfloat16):
            saved, loss = saved_bytes(lambda m=model: m(input_ids=ids, labels=ids).loss)
        loss.backward()
        results.append((saved, loss, [p.grad for p in model.parameters() if p.requires_grad]))
    (saved_a, loss_a, grads_a), (saved_b, loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))
    assert saved_b < 0.85 * saved_a  # per adapter: 1 byte of mask instead of 2 + a 2-byte copy


def test_fused_lora_is_as_close_to_fp32_as_the_unfused_layers(tiny_model):
    """The fused layer against the fp32 model with the same dropout draws: no farther than the unfused bf16 path
    (bf16 rounding, ~2% of a gradient's largest element here); a missing mask or scale would be ~10% off."""
    from tuneforge.training.speed import cast_frozen_weights
    from tuneforge.training.speed_kernels import use_compact_dropout, use_fused_lora

    fp32 = lora_model(tiny_model)
    unfused = copy.deepcopy(fp32)
    cast_frozen_weights(unfused, torch.bfloat16, everything=True)
    use_compact_dropout(unfused)
    fused = copy.deepcopy(unfused)
    assert use_fused_lora(fused) == sum(1 for m in fused.modules() if hasattr(m, "lora_B")) > 0
    ids = torch.randint(0, 200, (4, 48))
    results = []
    for model, autocast in ((fp32, False), (unfused, True), (fused, True)):
        torch.manual_seed(3)  # the same dropout draws
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            saved, loss = saved_bytes(lambda m=model: m(input_ids=ids, labels=ids).loss, model)
        loss.backward()
        results.append((saved, loss.item(), [p.grad for p in model.parameters() if p.requires_grad]))
    (_, loss_32, grads_32), (saved_u, loss_u, grads_u), (saved_f, loss_f, grads_f) = results

    def error(grads: list[torch.Tensor]) -> list[float]:
        return [((g - ref).abs().max() / ref.abs().max()).item() for g, ref in zip(grads, grads_32, strict=True)]

    assert abs(loss_f - loss_32) <= 2 * abs(loss_u - loss_32) + 1e-4
    assert max(error(grads_f)) <= 1.5 * max(error(grads_u))
    assert saved_f <= saved_u
    for model in (unfused, fused):
        model.eval()  # no dropout: the fused layer without a mask
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain_logits = unfused(input_ids=ids).logits.float()
        fused_logits = fused(input_ids=ids).logits.float()
    assert torch.allclose(fused_logits, plain_logits, atol=0.05 * plain_logits.abs().max().item())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lean_blocks_keep_the_loss_and_gradients_and_save_less(bf16_lora, tiny_model, method):
    from transformers import AutoModelForCausalLM

    from tuneforge.training.activation_memory import use_lean_blocks

    plain = bf16_lora if method == "lora" else AutoModelForCausalLM.from_pretrained(tiny_model).train()
    lean = copy.deepcopy(plain)
    layers = lean.config.num_hidden_layers
    assert use_lean_blocks(lean) == 3 * layers + 1  # two norms and the MLP of each layer, and the final norm
    ids = torch.randint(0, 200, (4, 48))
    results = []
    for model in (plain, lean):
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            saved, loss = saved_bytes(lambda m=model: m(input_ids=ids, labels=ids).loss)
        loss.backward()
        results.append((saved, loss, [p.grad for p in model.parameters() if p.requires_grad]))
    (saved_a, loss_a, grads_a), (saved_b, loss_b, grads_b) = results
    # the norm's backward sums in another order (fp32) and rounds to bf16 once: gradients within bf16 rounding
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-3)
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=3e-2, atol=3e-2 * a.float().abs().max().item())
    assert saved_b < 0.95 * saved_a


def test_lean_blocks_survive_train_and_eval_of_a_model_loaded_with_hub_kernels(tiny_model, monkeypatch):
    """transformers re-kernelizes a model loaded with ``use_kernels`` (its default where ``kernels`` is installed) at
    every ``train()`` / ``eval()``, which put the norms' class forward back: the Trainer's ``model.train()`` undid
    the lean norms of every training run."""
    from transformers import AutoModelForCausalLM

    from tuneforge.training.activation_memory import use_lean_blocks

    # transformers' default where the variable is unset; a CLI test run in this process sets it to NO (the shells do)
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    model = AutoModelForCausalLM.from_pretrained(tiny_model, use_kernels=True)
    assert model.use_kernels
    use_lean_blocks(model)
    model.eval()
    model.train()
    assert not model.use_kernels
    x = torch.randn(2, 3, model.config.hidden_size, requires_grad=True)
    layer = model.model.layers[0]
    assert type(layer.input_layernorm(x).grad_fn).__name__ == "RMSNormFunctionBackward"
    assert type(layer.mlp(x).grad_fn).__name__ != "AddBackward0"  # the MLP's lean forward ends in the down proj


def test_compact_fp32_attention_keeps_the_loss_and_gradients_and_saves_less(bf16_lora, monkeypatch):
    from tuneforge.training import speed_kernels
    from tuneforge.training.speed_kernels import use_fp32_attention

    packed = []  # what the compact attention's hooks keep (an outer hook would not see inside them)
    real_saved_in = speed_kernels.saved_in

    def recording(query):
        pack, unpack = real_saved_in(query)
        return (lambda tensor: packed.append(out := pack(tensor)) or out), unpack

    monkeypatch.setattr(speed_kernels, "saved_in", recording)

    fp32, compact = bf16_lora, copy.deepcopy(bf16_lora)
    assert use_fp32_attention(fp32.get_base_model()) and use_fp32_attention(compact.get_base_model(), compact=True)
    ids = torch.randint(0, 200, (4, 48))
    mask = torch.ones_like(ids)
    mask[2:, 40:] = 0  # right padding: the attention takes a mask
    results = []
    for model in (fp32, compact):
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            saved, loss = saved_bytes(lambda m=model: m(input_ids=ids, attention_mask=mask, labels=ids).loss)
        loss.backward()
        results.append((saved, loss, [p.grad for p in model.parameters() if p.requires_grad]))
    (saved_a, loss_a, grads_a), (saved_b, loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b)  # the forward is the same; backward reads a rounded copy of the output
    for a, b in zip(grads_a, grads_b, strict=True):
        assert torch.allclose(a, b, rtol=3e-2, atol=3e-2 * a.abs().max().item())
    kept = [item[0] for item in packed if isinstance(item, tuple)]
    # each layer's fp32 query, repeated key and value, and output wait in bf16: half their fp32 bytes
    assert len(kept) == 4 * compact.config.num_hidden_layers
    assert all(t.dtype == torch.bfloat16 for t in kept)
