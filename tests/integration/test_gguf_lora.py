"""``export: {format: gguf, adapter: separate}``: the base quantized alone and the LoRA adapter written in
llama.cpp's GGUF LoRA layout, whose update equals PEFT's (checked tensor by tensor against the merged export,
and in llama.cpp itself where its build runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.data import MEMORIZE, write_jsonl
from fixtures.llamacpp import require_llama_cpp

from tuneforge.errors import ConfigError
from tuneforge.services.compression import compress_model

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("lora-data") / "mem.jsonl", MEMORIZE)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_model) -> Path:
    """A LoRA adapter on every projection (q and k too: their rows take the rotary reorder), rsLoRA and a per-module
    alpha (PEFT's scale differs from llama.cpp's alpha / rank there)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=MODULES, init_lora_weights=False, use_rslora=True,
                        alpha_pattern={"down_proj": 2}, task_type="CAUSAL_LM")
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)  # as a run's adapter/ has
    return folder


def export(adapter: Path, data: Path, out: Path, settings, *, mode: str):
    steps = [{"name": "export", "format": "gguf", "quantization": "f32", "adapter": mode}]
    recipe = {"steps": steps, "eval": {"tasks": [{"data": str(data), "metrics": ["exact_match"], "max_new_tokens": 4}]},
              "latency_samples": 0}
    return compress_model(str(adapter), recipe, output=out, settings=settings)


def tensors(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.array(t.data, dtype=np.float32) for t in GGUFReader(str(path)).tensors}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, adapter, data, settings):
    root = tmp_path_factory.mktemp("exports")
    return {mode: (export(adapter, data, root / mode, settings, mode=mode), root / mode / "model")
            for mode in ("separate", "merged")}


def test_separate_adapter_is_llama_cpp_lora_equal_to_the_merged_update(exports):
    from gguf import GGUFReader

    report, folder = exports["separate"]
    assert sorted(p.name for p in folder.glob("*.gguf")) == ["adapter.gguf", "model.f32.gguf"]
    assert "LoRA" in report.stages[1].format and report.stages[1].details["adapter_tensors"]["attn_q"] == 2
    reader = GGUFReader(str(folder / "adapter.gguf"))
    fields = {name: reader.fields[name] for name in ("general.type", "adapter.type", "adapter.lora.alpha")}
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(fields["adapter.type"].parts[-1]).decode() == "lora"
    alpha = float(fields["adapter.lora.alpha"].parts[-1][0])
    base, lora = tensors(folder / "model.f32.gguf"), tensors(folder / "adapter.gguf")
    merged = tensors(exports["merged"][1] / "model.f32.gguf")
    names = sorted(n[:-len(".lora_a")] for n in lora if n.endswith(".lora_a"))
    assert len(names) == 2 * len(MODULES)  # two layers, every projection
    for name in names:  # llama.cpp's update: W + alpha / rank * B @ A, in its own row order
        a, b = lora[name + ".lora_a"], lora[name + ".lora_b"]
        assert a.shape[0] == b.shape[1] == 4
        np.testing.assert_allclose(base[name] + alpha / a.shape[0] * b @ a, merged[name], atol=1e-5, err_msg=name)
    assert not np.allclose(base["blk.0.attn_k.weight"], merged["blk.0.attn_k.weight"], atol=1e-3)


def test_llama_cpp_applies_the_adapter_as_the_merged_model_answers(exports, tiny_model):
    require_llama_cpp()
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    separate, merged = exports["separate"][1], exports["merged"][1]
    ids = AutoTokenizer.from_pretrained(tiny_model)("What is 1 plus 2?")["input_ids"]

    def logits(path: Path, lora: Path | None = None) -> np.ndarray:
        llm = Llama(model_path=str(path), lora_path=str(lora) if lora else None, n_ctx=64, n_threads=1,
                    logits_all=True, verbose=False)
        llm.eval(ids)
        out = np.array(llm.scores[:len(ids)])
        llm.close()
        return out

    with_lora = logits(separate / "model.f32.gguf", separate / "adapter.gguf")
    np.testing.assert_allclose(with_lora, logits(merged / "model.f32.gguf"), atol=1e-3)
    assert not np.allclose(with_lora, logits(separate / "model.f32.gguf"), atol=1e-2)  # the adapter is applied


def test_separate_adapter_is_refused_without_an_adapter_or_after_another_step(tiny_model, adapter, data, tmp_path,
                                                                             settings):
    separate = {"name": "export", "format": "gguf", "adapter": "separate"}
    with pytest.raises(ConfigError, match="has none") as caught:
        compress_model(str(tiny_model), {"steps": [separate], "latency_samples": 0}, output=tmp_path / "a",
                       settings=settings)
    assert caught.value.field == "steps.0.adapter"
    with pytest.raises(ConfigError, match="only step"):
        compress_model(str(adapter), {"steps": [{"name": "prune"}, separate], "latency_samples": 0,
                                      "calibration": {"data": str(data)}}, output=tmp_path / "b", settings=settings)
    with pytest.raises(ConfigError, match="format: gguf"):
        compress_model(str(adapter), {"steps": [{**separate, "format": "onnx"}]}, output=tmp_path / "c",
                       settings=settings)
    assert not any((tmp_path / name).exists() for name in "abc")
