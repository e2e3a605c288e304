"""The llama.cpp and vLLM engines' request mapping (pure functions, neither runtime imported), and the error an
engine that is not installed gives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tuneforge.errors import MissingDependencyError
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engines import check_engine
from tuneforge.serving.vllm_engine import LoraIds, engine_options, sampling_options


def test_vllm_sampling_maps_openai_parameters():
    greedy = sampling_options(SamplingParams(max_tokens=7, temperature=0, stop=("END", "\n\n")))
    assert greedy == {"n": 1, "max_tokens": 7, "temperature": 0, "top_p": 1.0, "stop": ["END", "\n\n"],
                      "include_stop_str_in_output": False}  # no seed key: vLLM's own randomness
    sampled = sampling_options(SamplingParams(max_tokens=3, temperature=0.7, top_p=0.9, seed=11))
    assert sampled["seed"] == 11 and sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9


def test_vllm_lora_ids_are_stable_per_folder_and_new_for_a_new_version():
    ids = LoraIds()
    first, second = ids.spec(Path("/reg/bot/1")), ids.spec(Path("/reg/bot/2"))
    assert (first.int_id, second.int_id) == (1, 2) and first.path == "/reg/bot/1" and first.name != second.name
    assert ids.spec(Path("/reg/bot/1")) == first  # the same folder is the same LoRA in vLLM's cache
    assert ids.folders() == ["/reg/bot/1", "/reg/bot/2"]
    options = engine_options(Path("/models/base"), ServingConfig(adapter_cache=3, max_batch=32))
    assert options["enable_lora"] is True and options["max_loras"] == 3 and options["max_num_seqs"] == 32


@pytest.mark.parametrize("engine,extra", [("vllm", "vllm"), ("llamacpp", "llamacpp")])
def test_an_engine_not_installed_names_its_extra(engine, extra):
    module = {"vllm": "vllm", "llamacpp": "llama_cpp"}[engine]
    if importlib.util.find_spec(module) is not None:
        check_engine(engine)  # installed: nothing to refuse
        return
    with pytest.raises(MissingDependencyError) as caught:
        check_engine(engine)
    assert f"tuneforge[{extra}]" in caught.value.hint and f"--engine {engine}" in caught.value.message
