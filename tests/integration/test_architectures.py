"""The architecture matrix: every table family with a transformers config class trains, saves, reloads and
merges a LoRA adapter on a tiny random model, with ``target_modules: auto`` resolved from the table."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config.models import LoraMethod
from tuneforge.models.architectures import ARCHITECTURES
from tuneforge.training.methods.lora import peft_lora_config

VOCAB, SEQ, BATCH, STEPS = 320, 12, 4, 12
COMMON = {
    "vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 128, "max_position_embeddings": 64, "initializer_range": 0.2,
    "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
}
GQA = {"num_key_value_heads": 2, "head_dim": 16}  # head_dim: several configs default to 128 or 256
MOE = {"num_experts_per_tok": 2, "moe_intermediate_size": 32}
MLA = {"q_lora_rank": 32, "kv_lora_rank": 32, "qk_rope_head_dim": 16, "qk_nope_head_dim": 16, "v_head_dim": 16,
       "n_routed_experts": 4, "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1}
SEQ2SEQ = {"decoder_start_token_id": 0, "dropout_rate": 0.0, "dropout": 0.0}
# Config overrides per test case; a case id is the model_type, or model_type-variant for a second variant.
CASES: dict[str, dict] = {
    "llama": GQA, "mistral": GQA, "qwen2": GQA, "qwen3": GQA, "gemma2": GQA, "gemma3_text": GQA,
    "phi": {}, "phi3": GQA, "glm": GQA, "glm4": GQA, "starcoder2": GQA,
    "mixtral": {**GQA, "num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {**GQA, **MOE, "num_experts": 4, "shared_expert_intermediate_size": 64},
    "qwen3_moe": {**GQA, **MOE, "num_experts": 4},
    "deepseek_v2": {**MLA, **MOE, "q_lora_rank": None},  # V2-Lite: q_proj instead of q_a_proj/q_b_proj
    "deepseek_v2-full": {**MLA, **MOE},
    "deepseek_v3": {**MLA, **MOE},
    "gpt2": {}, "gpt_bigcode": {}, "gpt_neox": {}, "bloom": {}, "falcon": {},
    "opt": {"ffn_dim": 128, "word_embed_proj_dim": 64},
    "t5": {**SEQ2SEQ, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2,
           "num_heads": 4},
    "t5-gated": {**SEQ2SEQ, "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2,
                 "num_heads": 4, "feed_forward_proj": "gated-gelu"},
    "bart": {**SEQ2SEQ, "d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "init_std": 0.2},
    "bert": {"num_labels": 2},
}
# Targets that only some variants have, each variant being a case above.
VARIANT_ONLY = {"t5": {"wi", "wi_0", "wi_1"}, "deepseek_v2": {"q_proj", "q_a_proj", "q_b_proj"}}
TASKS = {"decoder": "CAUSAL_LM", "encoder-decoder": "SEQ_2_SEQ_LM", "encoder": "SEQ_CLS"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on shared cores, OpenMP threads waiting on each other make these tiny ops ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _auto_class(kind: str):
    import transformers

    names = {"decoder": "AutoModelForCausalLM", "encoder-decoder": "AutoModelForSeq2SeqLM",
             "encoder": "AutoModelForSequenceClassification"}
    return getattr(transformers, names[kind])


def _base_model(model_type: str, overrides: dict, path):
    """A tiny random model from the family's config class, saved to ``path`` and returned."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, **{**COMMON, **overrides})
    torch.manual_seed(0)
    model = _auto_class(ARCHITECTURES[model_type].kind).from_config(config)
    model.save_pretrained(path)
    return model


def _batch(kind: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=generator)  # [B, T]
    if kind == "encoder":
        return {"input_ids": ids, "labels": torch.tensor([0, 1, 1, 0])}
    if kind == "encoder-decoder":
        return {"input_ids": ids, "labels": torch.randint(3, VOCAB, (BATCH, SEQ // 2), generator=generator)}
    return {"input_ids": ids, "labels": ids}


@torch.no_grad()
def _eval(model, batch):
    model.eval()
    out = model(**batch)
    return out.loss.item(), out.logits


def _train(model, batch) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(STEPS):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def _resolve(model, dotted: str):
    for part in dotted.split("."):
        model = getattr(model, part)
    return model


def _check_block_outputs(model, model_type: str) -> None:
    """Every attention / feed-forward output name of the row (bottleneck adapters) is a Linear of the model."""
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"]
    for suffix in ARCHITECTURES[model_type].block_outputs:
        assert any(n == suffix or n.endswith("." + suffix) for n in names), f"{model_type}: no {suffix}"


def _check_targets(peft_model, model_type: str) -> None:
    from peft.tuners.lora import LoraLayer

    wrapped = {name.rsplit(".", 1)[-1] for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    assert wrapped, f"{model_type}: no module got a LoRA adapter"
    unmatched = set(ARCHITECTURES[model_type].lora_targets) - wrapped
    assert unmatched <= VARIANT_ONLY.get(model_type, set()), f"{model_type}: {sorted(unmatched)} matched nothing"


@pytest.mark.filterwarnings("ignore:fan_in_fan_out is set to False")  # gpt2's Conv1D: PEFT flips it itself
@pytest.mark.parametrize("case", list(CASES))
def test_lora_trains_saves_reloads_and_merges(case: str, tmp_path) -> None:
    """Loss falls; the adapter reloads with plain PEFT to identical logits; merging keeps them."""
    from peft import PeftModel, get_peft_model

    model_type = case.split("-")[0]
    arch = ARCHITECTURES[model_type]
    model = _base_model(model_type, CASES[case], tmp_path / "base")
    blocks = _resolve(model, arch.layers_attr)
    assert isinstance(blocks, torch.nn.ModuleList) and len(blocks) == 2
    _check_block_outputs(model, model_type)

    torch.manual_seed(0)
    peft_model = get_peft_model(model, peft_lora_config(LoraMethod(), model, model_type, task_type=TASKS[arch.kind]))
    _check_targets(peft_model, model_type)
    batch = _batch(arch.kind)
    loss_before, _ = _eval(peft_model, batch)
    _train(peft_model, batch)
    loss_after, logits = _eval(peft_model, batch)
    assert loss_after < 0.9 * loss_before, f"{case}: loss {loss_before:.3f} -> {loss_after:.3f}"
    peft_model.save_pretrained(tmp_path / "adapter")

    base = _auto_class(arch.kind).from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter")
    _, reloaded_logits = _eval(reloaded, batch)
    torch.testing.assert_close(reloaded_logits, logits, rtol=0, atol=1e-6)

    merged = reloaded.merge_and_unload()
    _, merged_logits = _eval(merged, batch)
    tolerance = merge_tolerance(reloaded_logits, merged.config)
    torch.testing.assert_close(merged_logits, reloaded_logits, rtol=tolerance, atol=tolerance)


def merge_tolerance(logits: torch.Tensor, config) -> float:
    """How far merged logits may stray from unmerged ones: merging sums the LoRA update into the weight, so
    every layer adds the same terms in another order. Rounding grows with the dtype's epsilon, the width of
    the sums (the widest layer) and the size of the logits; this is that bound, not a number at the edge
    (glm once landed at 1.36e-5 against a fixed 1e-5)."""
    widths = [getattr(config, name, 0) or 0 for name in ("hidden_size", "intermediate_size", "d_model", "d_ff",
                                                           "n_embd", "ffn_dim", "ffn_hidden_size")]
    width = max([w for w in widths if isinstance(w, int)] + [64])
    return float(torch.finfo(logits.dtype).eps * width * max(1.0, logits.abs().max().item()))


def test_every_family_with_a_config_class_is_in_the_matrix() -> None:
    """A new table row gets a case here; remote-code rows are those transformers has no config class for."""
    from transformers import CONFIG_MAPPING

    covered = {case.split("-")[0] for case in CASES}
    for model_type, arch in ARCHITECTURES.items():
        assert (model_type in covered) != arch.remote_code, model_type
        assert (model_type in CONFIG_MAPPING) != arch.remote_code, model_type


def test_fused_moe_experts_are_adapted_through_target_parameters(tmp_path) -> None:
    """Mixtral's experts are 3-D parameters: LoRA reaches them with target_parameters (and no dropout)."""
    from peft import PeftModel, get_peft_model

    from tuneforge.errors import ConfigError
    from tuneforge.training.methods import PrepareContext
    from tuneforge.training.methods.lora import prepare_lora

    overrides = CASES["mixtral"]
    with pytest.raises(ConfigError, match="fused expert parameters") as caught:
        prepare_lora(_base_model("mixtral", overrides, tmp_path / "base"), LoraMethod(target_modules="all-linear"),
                     PrepareContext(model_type="mixtral"))
    assert caught.value.field == "method.dropout" and "dropout: 0" in caught.value.hint

    method = LoraMethod(dropout=0, target_parameters=["experts.gate_up_proj", "experts.down_proj"])
    torch.manual_seed(0)
    peft_model = prepare_lora(_base_model("mixtral", overrides, tmp_path / "base"), method,
                              PrepareContext(model_type="mixtral"))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("experts" in n for n in trainable) and any("q_proj" in n for n in trainable)
    batch = _batch("decoder")
    loss_before, _ = _eval(peft_model, batch)
    _train(peft_model, batch)
    loss_after, logits = _eval(peft_model, batch)
    assert loss_after < 0.9 * loss_before
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(_auto_class("decoder").from_pretrained(tmp_path / "base"), tmp_path / "adapter")
    _, reloaded_logits = _eval(reloaded, batch)
    torch.testing.assert_close(reloaded_logits, logits, rtol=0, atol=1e-6)
    merged = reloaded.merge_and_unload()
    _, merged_logits = _eval(merged, batch)
    tolerance = merge_tolerance(logits, merged.config)
    torch.testing.assert_close(merged_logits, logits, rtol=tolerance, atol=tolerance)
