"""Write a Llama-family transformers model as a GGUF file that llama.cpp loads, with the ``gguf`` package.

llama.cpp's own converter (``convert_hf_to_gguf.py``) is not on PyPI; this writer follows it for the Llama
layout: tensor names from ``gguf``'s name tables, the query/key rows permuted back from Hugging Face's
rotary layout, the BPE vocabulary with its merges and special tokens (``gguf.SpecialVocab``), and 2-D weights
quantized with ``gguf.quants`` (Q8_0, Q5_0, Q5_1, Q4_0 or Q4_1 in blocks of 32; the embedding stays Q8_0 under
the 4- and 5-bit types, as llama.cpp's own presets keep the output matrix at higher precision).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# model_type -> llama.cpp architecture; mistral without sliding window is the Llama graph.
ARCHITECTURES = {"llama": "llama", "mistral": "llama"}
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9}
BLOCK = 32  # weights per Q8_0 / Q4_0 block


def pre_tokenizer_name(model_dir: Path) -> str | None:
    """llama.cpp's name for the tokenizer's pre-tokenizer, or None when it is not one llama.cpp knows here.

    ``smollm``: individual digits, then byte-level BPE (SmolLM / SmolLM2); ``gpt-2``: byte-level BPE alone.
    """
    file = model_dir / "tokenizer.json"
    if not file.is_file():
        return None
    tokenizer = json.loads(file.read_text(encoding="utf-8"))
    if (tokenizer.get("model") or {}).get("type") != "BPE":
        return None
    pre = tokenizer.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"]:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    return None


def write_gguf(model: Any, tokenizer: Any, tokenizer_dir: Path, path: Path, *, quantization: str) -> dict[str, Any]:
    """Write ``model`` (a Llama-family causal LM) to ``path``.

    Returns:
        Counts of tensors by GGUF type, for the report.
    """
    import gguf

    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer = gguf.GGUFWriter(str(path), ARCHITECTURES[config.model_type])
    _write_hparams(writer, config, head_dim=head_dim, quantization=quantization)
    _write_vocab(writer, tokenizer, tokenizer_dir, vocab_size=config.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    counts: dict[str, int] = {}
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight" or "rotary_emb" in hf_name:
            continue  # llama.cpp reuses token_embd for a tied output; rotary tables are recomputed
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = unrotate(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = unrotate(data, kv_heads)
        qtype = _tensor_type(name, data, quantization)
        encoded, raw_type = _encode(data, qtype)
        writer.add_tensor(name, encoded, raw_dtype=raw_type)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts


def _write_hparams(writer: Any, config: Any, *, head_dim: int, quantization: str) -> None:
    writer.add_name(getattr(config, "_name_or_path", "") and Path(config._name_or_path).name or "model")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(FILE_TYPES[quantization])
    writer.add_quantization_version(2)


def _rope_theta(config: Any) -> float:
    parameters = getattr(config, "rope_parameters", None) or {}
    return parameters.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0


def _write_vocab(writer: Any, tokenizer: Any, tokenizer_dir: Path, *, vocab_size: int) -> None:
    import gguf

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            special = i in added and added[i].special
            types.append(gguf.TokenType.CONTROL if special else
                         gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer_dir) or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None and isinstance(getattr(tokenizer, "chat_template", None), str):
        writer.add_chat_template(tokenizer.chat_template)


def unrotate(weight: Any, heads: int) -> Any:
    """Undo Hugging Face's rotary row order of a query or key matrix ([heads * head_dim, hidden])."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _tensor_type(name: str, data: Any, quantization: str) -> Any:
    import gguf

    types = gguf.GGMLQuantizationType
    if data.ndim < 2 or quantization == "f32":
        return types.F32
    if quantization == "f16" or data.shape[-1] % BLOCK:
        return types.F16
    if quantization != "q8_0" and name == "token_embd.weight":
        return types.Q8_0  # the embedding is also the (tied) output matrix: llama.cpp keeps it above 4 bits too
    return types[quantization.upper()]


def _encode(data: Any, qtype: Any) -> tuple[Any, Any]:
    """The bytes of a tensor in ``qtype`` and the type to declare."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    if qtype == types.F32:
        return data.astype(np.float32), None
    if qtype == types.F16:
        return data.astype(np.float16), None
    return gguf.quants.quantize(data.astype(np.float32), qtype), qtype
