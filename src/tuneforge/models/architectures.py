"""The architecture table: one row per model family, data rather than code paths.

``lora_targets`` are the module-name suffixes that ``target_modules: auto`` adapts: the attention
projections and the MLP, the set that QLoRA and most recipes found best.
"""

from __future__ import annotations

from dataclasses import dataclass

_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """One model family.

    Attributes:
        model_type: ``config.model_type`` in transformers.
        family: Human name of the family.
        kind: ``decoder``, ``encoder-decoder`` or ``encoder``.
        attention: ``MHA``, ``MQA`` or ``GQA``.
        position: ``RoPE``, ``ALiBi``, ``learned`` or ``relative``.
        lora_targets: Module-name suffixes that get LoRA adapters under ``target_modules: auto``.
        layers_attr: Dotted path of the list of transformer blocks (for ``freeze``).
        remote_code: Whether loading needs the model's own code (``trust_remote_code``).
    """

    model_type: str
    family: str
    kind: str
    attention: str
    position: str
    lora_targets: tuple[str, ...]
    layers_attr: str = "model.layers"
    remote_code: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in (
        Architecture("llama", "Llama 2/3, SmolLM, Yi", "decoder", "GQA", "RoPE", _LLAMA_LIKE),
        Architecture("mistral", "Mistral", "decoder", "GQA", "RoPE", _LLAMA_LIKE),
        Architecture("qwen2", "Qwen2 / Qwen2.5", "decoder", "GQA", "RoPE", _LLAMA_LIKE),
        Architecture("qwen3", "Qwen3", "decoder", "GQA", "RoPE", _LLAMA_LIKE),
        Architecture("gemma2", "Gemma 2", "decoder", "GQA", "RoPE", _LLAMA_LIKE),
        Architecture(
            "phi3", "Phi-3", "decoder", "GQA", "RoPE", ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
        ),
        Architecture(
            "gpt2", "GPT-2", "decoder", "MHA", "learned", ("c_attn", "c_proj", "c_fc"), layers_attr="transformer.h"
        ),
        Architecture(
            "gpt_neox",
            "GPT-NeoX, Pythia",
            "decoder",
            "MHA",
            "RoPE",
            ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
            layers_attr="gpt_neox.layers",
        ),
        Architecture(
            "opt",
            "OPT",
            "decoder",
            "MHA",
            "learned",
            ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
            layers_attr="model.decoder.layers",
        ),
        Architecture(
            "bert",
            "BERT, MiniLM",
            "encoder",
            "MHA",
            "learned",
            ("query", "key", "value", "dense"),
            layers_attr="bert.encoder.layer",
        ),
    )
}


def architecture_for(model_type: str) -> Architecture | None:
    """The table row for a ``config.model_type``, or ``None`` for a family not in the table."""
    return ARCHITECTURES.get(model_type)
