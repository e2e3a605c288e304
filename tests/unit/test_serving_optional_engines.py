"""The llama.cpp and vLLM engines' request mapping (pure functions, neither runtime imported), and the error an
engine that is not installed gives."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tuneforge.errors import ConfigError, MissingDependencyError
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engines import check_engine
from tuneforge.serving.vllm_engine import LoraIds, engine_options, lora_rank, sampling_options, slot_rank


def test_vllm_sampling_maps_openai_parameters():
    greedy = sampling_options(SamplingParams(max_tokens=7, temperature=0, stop=("END", "\n\n")))
    assert greedy == {"n": 1, "max_tokens": 7, "temperature": 0, "top_p": 1.0, "stop": ["END", "\n\n"],
                      "include_stop_str_in_output": False}  # no seed key: vLLM's own randomness
    sampled = sampling_options(SamplingParams(max_tokens=3, temperature=0.7, top_p=0.9, seed=11))
    assert sampled["seed"] == 11 and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9


def test_vllm_lora_ids_are_stable_per_folder_and_new_for_a_new_version():
    ids = LoraIds(capacity=2)
    first, second = ids.spec(Path("/reg/bot/1")), ids.spec(Path("/reg/bot/2"))
    assert (first.int_id, second.int_id) == (1, 2) and first.path == "/reg/bot/1" and first.name != second.name
    assert ids.spec(Path("/reg/bot/1")) == first  # the same folder is the same LoRA in vLLM's cache
    assert ids.folders() == ["/reg/bot/2", "/reg/bot/1"]  # least recently used first
    assert ids.spec(Path("/reg/bot/3")).int_id == 3 and ids.folders() == ["/reg/bot/1", "/reg/bot/3"]


def test_vllm_engine_options_on_cpu_and_gpu():
    from transformers import LlamaConfig

    model = LlamaConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        max_position_embeddings=256)
    config = ServingConfig(engine="vllm", adapter_cache=3, max_batch=32, dtype="float32", max_lora_rank=12)
    gpu = engine_options(Path("/models/base"), config, model_config=model, device="cuda")
    assert gpu["enable_lora"] is True and gpu["max_num_seqs"] == 32 and gpu["dtype"] == "float32"
    assert (gpu["max_loras"], gpu["max_cpu_loras"], gpu["max_model_len"], gpu["max_lora_rank"]) == (3, 3, 256, 16)
    assert "kv_cache_memory_bytes" not in gpu and "enforce_eager" not in gpu  # vLLM's GPU defaults
    cpu = engine_options(Path("/models/base"), config.model_copy(update={"max_batch": 2}), model_config=model,
                         device="cpu")
    assert cpu["enforce_eager"] is True and cpu["max_loras"] == 2  # no more adapters in a batch than sequences
    per_token = 2 * 2 * 2 * 32 * 4  # K and V, 2 layers, 2 KV heads of 32, float32
    assert cpu["kv_cache_memory_bytes"] == 2 * 256 * per_token  # 2 sequences of the whole context


def test_vllm_lora_slots_take_the_smallest_rank_vllm_accepts(tmp_path):
    assert [slot_rank(r) for r in (1, 4, 8, 9, 16, 33, 300)] == [1, 8, 8, 16, 16, 64, 320]
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 8, "rank_pattern": {"q_proj": 128}}))
    assert lora_rank(tmp_path) == 128
    with pytest.raises(ConfigError, match="adapter_config.json"):
        lora_rank(tmp_path / "missing")


@pytest.mark.parametrize("engine,extra", [("vllm", "vllm"), ("llamacpp", "llamacpp")])
def test_an_engine_not_installed_names_its_extra(engine, extra):
    module = {"vllm": "vllm", "llamacpp": "llama_cpp"}[engine]
    if importlib.util.find_spec(module) is not None:
        check_engine(engine)  # installed: nothing to refuse
        return
    with pytest.raises(MissingDependencyError) as caught:
        check_engine(engine)
    assert f"tuneforge[{extra}]" in caught.value.hint and f"--engine {engine}" in caught.value.message
