"""The step-level speed switches: packed-bits dropout, adapter inputs in the compute dtype, fp32 attention, and the
quantized load that lets go of the checkpoint's memory map."""

from __future__ import annotations

import pytest
import torch

from tuneforge.training.speed_kernels import (
    FP32_SDPA, AdapterInputsInComputeDtype, PackedBitsDropout, use_fp32_attention, use_packed_dropout,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_dropout_keeps_one_minus_p_scaled_and_routes_the_gradient_through_the_mask(dtype):
    torch.manual_seed(0)
    dropout = PackedBitsDropout(0.1)
    x = (torch.rand(1000, 1000) + 0.5).to(dtype).requires_grad_()  # no zeros: a zero output means dropped
    y = dropout(x)
    kept = y != 0
    # 1e6 draws: the kept fraction's standard deviation is 3e-4; p is rounded to 2^-16 (1.5e-5)
    assert kept.float().mean().item() == pytest.approx(0.9, abs=2e-3)
    expected = (x.detach().float() * dropout.scale).to(dtype)  # one rounding, as the fp32 path cast back
    assert torch.equal(y[kept], expected[kept])
    y.sum().backward()
    assert torch.equal(x.grad, torch.where(kept, torch.tensor(dropout.scale, dtype=dtype), 0).to(dtype))
    assert y.dtype == dtype


def test_packed_dropout_is_seeded_and_the_identity_in_eval_mode():
    dropout = PackedBitsDropout(0.3)
    x = torch.ones(64, 64)
    torch.manual_seed(5)
    first = dropout(x)
    torch.manual_seed(5)
    assert torch.equal(first, dropout(x))
    assert not torch.equal(first, dropout(x))  # the stream moves on
    dropout.eval()
    assert dropout(x) is x
    assert PackedBitsDropout(1e-7).threshold == 2**16 and torch.equal(PackedBitsDropout(1e-7).train()(x), x)


def test_cpu_random_words_are_seeded_by_torch_and_every_bit_is_fair():
    from tuneforge.training.speed_kernels import cpu_random_words

    torch.manual_seed(11)
    first = cpu_random_words(50_000)
    after = torch.rand(1)  # one draw of torch's generator seeded them: the stream moved on by one
    torch.manual_seed(11)
    assert torch.equal(first, cpu_random_words(50_000)) and not torch.equal(first, cpu_random_words(50_000))
    torch.manual_seed(11)
    torch.randint(0, 2**62, (1,))
    assert torch.equal(torch.rand(1), after)
    bits = (first.unsqueeze(1) >> torch.arange(64)) & 1
    # 50k draws a bit: its mean's standard deviation is 2.2e-3
    assert torch.allclose(bits.double().mean(0), torch.full((64,), 0.5, dtype=torch.float64), atol=0.012)


@pytest.fixture
def tiny_peft(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def test_use_packed_dropout_replaces_every_lora_dropout(tiny_peft):
    lora_layers = [m for m in tiny_peft.modules() if hasattr(m, "lora_dropout")]
    assert use_packed_dropout(tiny_peft) == len(lora_layers) > 0
    assert all(isinstance(m.lora_dropout["default"], PackedBitsDropout) for m in lora_layers)
    assert use_packed_dropout(tiny_peft) == 0  # already replaced


def test_adapter_inputs_in_compute_dtype_give_the_same_numbers_and_are_restored_after_training(tiny_peft):
    from tuneforge.training.speed import cast_frozen_weights

    cast_frozen_weights(tiny_peft, torch.bfloat16, everything=True)  # the residual stream runs in bf16
    tiny_peft.eval()
    for module in tiny_peft.modules():  # non-zero adapters, so that their path counts
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 11]])
    callback = AdapterInputsInComputeDtype(tiny_peft)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cast = tiny_peft(input_ids=ids).logits
        callback.on_train_begin(None, None, None)
        assert all(not layer.cast_input_dtype_enabled for layer in callback.layers)
        kept = tiny_peft(input_ids=ids).logits
    callback.on_train_end(None, None, None)
    assert torch.equal(cast, kept)
    assert all(layer.cast_input_dtype_enabled for layer in callback.layers) and callback.layers


def test_fp32_attention_is_switched_on_sdpa_models_and_matches_it(tiny_model):
    from transformers import AutoModelForCausalLM

    sdpa = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    fp32 = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16, attn_implementation="sdpa").eval()
    assert use_fp32_attention(fp32) and fp32.config._attn_implementation == FP32_SDPA
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 11], [8, 9, 10, 11, 12, 0, 0]])
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        expected = sdpa(input_ids=ids, attention_mask=mask).logits.float()
        got = fp32(input_ids=ids, attention_mask=mask).logits.float()
    assert got.dtype == expected.dtype and torch.allclose(got, expected, atol=0.1, rtol=0.05)  # bf16 rounding
    eager = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="eager")
    assert not use_fp32_attention(eager) and eager.config._attn_implementation == "eager"


def test_qlora_load_is_4bit_and_holds_no_view_of_the_checkpoint_file(tiny_model, tmp_path):
    pytest.importorskip("bitsandbytes")
    import shutil

    from transformers import BitsAndBytesConfig

    from tuneforge.models.loading import load_causal_lm

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    private = shutil.copytree(tiny_model, tmp_path / "model")  # other tests' models may still map the shared copy
    model = load_causal_lm(private, quantization_config=config)
    linears = [m for name, m in model.named_modules() if name.endswith(("q_proj", "down_proj"))]
    assert linears and all(m.weight.dtype == torch.uint8 and m.weight.__class__.__name__ == "Params4bit"
                           for m in linears)
    file = str(next(private.glob("*.safetensors")))
    assert file not in _mapped_files()  # while the model lives


def _mapped_files() -> set[str]:
    """The files this process has memory-mapped now (/proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        return {line.split(maxsplit=5)[5].strip() for line in maps if len(line.split(maxsplit=5)) == 6}


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_lora_scaled_at_rank_gives_peft_s_output_and_gradients(tiny_model, dropout):
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tuneforge.training.speed_kernels import use_scale_at_rank

    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = get_peft_model(base, config)
    for module in peft_model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.1)
    ours = copy.deepcopy(peft_model)
    use_packed_dropout(peft_model)
    use_packed_dropout(ours)
    assert use_scale_at_rank(ours) == sum(1 for m in ours.modules() if hasattr(m, "lora_B")) > 0
    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 11]])
    outputs = []
    for model in (peft_model, ours):
        torch.manual_seed(3)  # the same dropout masks
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        outputs.append((loss, grads))
    (loss_a, grads_a), (loss_b, grads_b) = outputs
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads_a, grads_b, strict=True))
    ours.eval()
    with torch.no_grad():
        assert torch.allclose(ours(input_ids=ids).logits, peft_model.eval()(input_ids=ids).logits, atol=1e-5)
    assert copy.deepcopy(ours) is not None  # the swapped class copies (checkpoints, best-model reloads)
