"""The architecture table: one row per model family, data rather than code paths.

``lora_targets`` are the module-name suffixes that ``target_modules: auto`` adapts: the attention
projections and the MLP, the set that QLoRA and most recipes found best. PEFT matches a suffix against
the last part(s) of a module name, and a suffix that no module of a given checkpoint has is skipped,
so a row may list the names of several variants of its family (T5 and T5 v1.1, DeepSeek-V2 and -Lite).

Every module name and ``layers_attr`` of a row with ``remote_code=False`` is checked against the
installed transformers by ``tests/integration/test_architectures.py``, which builds a tiny model of each.
"""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("decoder", "encoder-decoder", "encoder")
ATTENTIONS = ("MHA", "MQA", "GQA")
POSITIONS = ("RoPE", "ALiBi", "learned", "relative")

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_LLAMA_LIKE = (*_ATTN, "gate_proj", "up_proj", "down_proj")
_GLM = (*_ATTN, "gate_up_proj", "down_proj")
_MLA = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
_NEOX = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
_NEOX_OUT = ("dense", "dense_4h_to_h")
_GPT2 = ("c_attn", "c_proj", "c_fc")
_FUSED_EXPERTS = (
    "transformers 5 stores the routed experts as fused 3-D parameters, not nn.Linear, so LoRA adapts "
)
_EXPERT_PARAMS = "method.target_parameters: [experts.gate_up_proj, experts.down_proj] adapts the experts (dropout 0)."

# PEFT 0.21 rewrites gate_proj/up_proj/down_proj targets on these models into target_parameters on the fused
# experts (which refuse lora_dropout > 0), and then no longer adapts the shared experts and dense layers.
_MLA_NOTE = (
    "Multi-head latent attention (MLA): K and V come from a low-rank latent. " + _FUSED_EXPERTS + "the attention "
    "only: PEFT turns gate_proj/up_proj/down_proj targets into target_parameters on the fused experts (lora_dropout "
    "must be 0) and then skips the shared experts and dense layers."
)


@dataclass(frozen=True)
class Architecture:
    """One model family.

    Attributes:
        model_type: ``config.model_type`` in transformers.
        family: Human name of the family.
        kind: ``decoder``, ``encoder-decoder`` or ``encoder`` (see ``KINDS``).
        attention: ``MHA``, ``MQA`` or ``GQA`` (see ``ATTENTIONS``): that of the family's usual sizes.
        position: ``RoPE``, ``ALiBi``, ``learned`` or ``relative`` (see ``POSITIONS``).
        lora_targets: Module-name suffixes that get LoRA adapters under ``target_modules: auto``.
        block_outputs: Module-name suffixes of each block's attention output and feed-forward output
            projections, attention first (where ``method: bottleneck`` puts its adapters).
        layers_attr: Dotted path of the list of transformer blocks on the model with its head
            (``*ForCausalLM``, ``*ForConditionalGeneration``, ``BertFor*``); the decoder's for an
            encoder-decoder (used by ``freeze``).
        remote_code: Whether loading needs the model's own code (``trust_remote_code``).
        notes: Caveats: variants that differ, modules that LoRA cannot adapt.
    """

    model_type: str
    family: str
    kind: str
    attention: str
    position: str
    lora_targets: tuple[str, ...]
    block_outputs: tuple[str, ...] = ("o_proj", "down_proj")
    layers_attr: str = "model.layers"
    remote_code: bool = False
    notes: str = ""


def _decoder(
    model_type: str, family: str, attention: str, position: str, targets: tuple[str, ...],
    *, outputs: tuple[str, ...] = ("o_proj", "down_proj"), layers_attr: str = "model.layers",
    remote_code: bool = False, notes: str = "",
) -> Architecture:
    return Architecture(
        model_type, family, "decoder", attention, position, targets, outputs, layers_attr, remote_code, notes
    )


_ROWS = (
    _decoder("llama", "Llama 2/3, SmolLM, Yi", "GQA", "RoPE", _LLAMA_LIKE,
             notes="Llama 1 and Llama 2 7B/13B are MHA (as many KV heads as query heads)."),
    _decoder("mistral", "Mistral", "GQA", "RoPE", _LLAMA_LIKE),
    _decoder("mixtral", "Mixtral (MoE)", "GQA", "RoPE", _ATTN, outputs=("o_proj",),
             notes=_FUSED_EXPERTS + "the attention only; the router is not a Linear either. " + _EXPERT_PARAMS),
    _decoder("qwen2", "Qwen2 / Qwen2.5", "GQA", "RoPE", _LLAMA_LIKE),
    _decoder("qwen2_moe", "Qwen1.5-MoE / Qwen2-MoE", "GQA", "RoPE", _LLAMA_LIKE,
             notes=_FUSED_EXPERTS + "the attention and the shared expert (gate/up/down_proj). "
             "Qwen1.5-MoE-A2.7B is MHA."),
    _decoder("qwen3", "Qwen3", "GQA", "RoPE", _LLAMA_LIKE),
    _decoder("qwen3_moe", "Qwen3-MoE", "GQA", "RoPE", _ATTN, outputs=("o_proj",),
             notes=_FUSED_EXPERTS + "the attention only (Qwen3-MoE has no shared expert). " + _EXPERT_PARAMS),
    _decoder("gemma2", "Gemma 2", "GQA", "RoPE", _LLAMA_LIKE),
    _decoder("gemma3_text", "Gemma 3 (text: 270M, 1B)", "GQA", "RoPE", _LLAMA_LIKE,
             notes="Gemma 3 4B and up load as the multimodal 'gemma3', which is not in the table."),
    _decoder("phi", "Phi-1.5, Phi-2", "MHA", "RoPE", ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
             outputs=("dense", "fc2")),
    _decoder("phi3", "Phi-3, Phi-3.5, Phi-4", "GQA", "RoPE", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
             notes="Phi-3-mini and Phi-3.5-mini are MHA; medium, Phi-4 and Phi-4-mini use GQA."),
    _decoder("glm", "GLM-4 9B (transformers format)", "GQA", "RoPE", _GLM),
    _decoder("glm4", "GLM-4-0414", "GQA", "RoPE", _GLM),
    _decoder("deepseek_v2", "DeepSeek-V2 (MoE)", "MHA", "RoPE", ("q_proj", *_MLA),
             notes=_MLA_NOTE + " q_proj is V2-Lite's (no q_lora_rank), q_a_proj/q_b_proj the full V2's."),
    _decoder("deepseek_v3", "DeepSeek-V3, R1 (MoE)", "MHA", "RoPE", _MLA, notes=_MLA_NOTE),
    _decoder("gpt2", "GPT-2", "MHA", "learned", _GPT2, outputs=("c_proj",), layers_attr="transformer.h",
             notes="Conv1D layers (weights stored transposed): PEFT sets fan_in_fan_out itself."),
    _decoder("gpt_bigcode", "StarCoder, SantaCoder", "MQA", "learned", _GPT2, outputs=("c_proj",),
             layers_attr="transformer.h"),
    _decoder("starcoder2", "StarCoder2", "GQA", "RoPE", (*_ATTN, "c_fc", "c_proj"), outputs=("o_proj", "c_proj")),
    _decoder("gpt_neox", "GPT-NeoX, Pythia", "MHA", "RoPE", _NEOX, outputs=_NEOX_OUT, layers_attr="gpt_neox.layers"),
    _decoder("falcon", "Falcon", "MQA", "RoPE", _NEOX, outputs=_NEOX_OUT, layers_attr="transformer.h",
             notes="Falcon-7B is MQA; Falcon-40B/180B (new_decoder_architecture) use GQA."),
    _decoder("bloom", "BLOOM, BLOOMZ", "MHA", "ALiBi", _NEOX, outputs=_NEOX_OUT, layers_attr="transformer.h"),
    _decoder("opt", "OPT", "MHA", "learned", ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
             outputs=("out_proj", "fc2"), layers_attr="model.decoder.layers"),
    Architecture("t5", "T5, Flan-T5", "encoder-decoder", "MHA", "relative",
                 ("q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"), ("o", "wo"), layers_attr="decoder.block",
                 notes="wi is the original T5's MLP input; T5 v1.1 and Flan-T5 (gated-gelu) have wi_0 and wi_1. "
                 "Encoder blocks: encoder.block."),
    Architecture("bart", "BART", "encoder-decoder", "MHA", "learned",
                 ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"), ("out_proj", "fc2"),
                 layers_attr="model.decoder.layers", notes="Encoder blocks: model.encoder.layers."),
    Architecture("bert", "BERT, MiniLM", "encoder", "MHA", "learned", ("query", "key", "value", "dense"),
                 ("output.dense",), layers_attr="bert.encoder.layer",
                 notes="'dense' also matches the pooler and the MLM head transform; a bare BertModel "
                 "has its blocks at encoder.layer."),
    # Families whose code ships with the checkpoint: names read from their modeling files.
    _decoder("baichuan", "Baichuan, Baichuan 2", "MHA", "RoPE", ("W_pack", "o_proj", *_LLAMA_LIKE[4:]),
             remote_code=True, notes="Needs trust_remote_code. The 13B models use ALiBi instead of RoPE."),
    _decoder("internlm2", "InternLM2, InternLM2.5", "GQA", "RoPE", ("wqkv", "wo", "w1", "w2", "w3"),
             outputs=("wo", "w2"),
             remote_code=True, notes="Needs trust_remote_code."),
    _decoder("chatglm", "ChatGLM2/3, glm-4-9b-chat", "GQA", "RoPE", _NEOX, outputs=_NEOX_OUT,
             layers_attr="transformer.encoder.layers",
             remote_code=True, notes="Needs trust_remote_code; 'glm' is the transformers port of GLM-4 9B."),
)

ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in _ROWS}


def architecture_for(model_type: str) -> Architecture | None:
    """The table row for a ``config.model_type``.

    Args:
        model_type: ``config.model_type`` of a transformers config.

    Returns:
        The row, or ``None`` for a family not in the table.
    """
    return ARCHITECTURES.get(model_type)
