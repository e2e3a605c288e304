"""Compression steps on tiny models: sizes fall, outputs still run, pruned weights are zero or gone, the student
learns from the teacher, and bad input is refused before any work with the source untouched."""

from __future__ import annotations

import hashlib
import os
import json
from pathlib import Path

import pytest
import torch
from fixtures.data import MEMORIZE, write_jsonl
from fixtures.llamacpp import require_llama_cpp

from tuneforge.errors import ConfigError, ConflictError, DataError
from tuneforge.services.compression import compress_model
from tuneforge.settings import Settings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices run fastest on one thread (and a busy CI machine makes two threads wait on each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("compress-data") / "mem.jsonl", MEMORIZE)


def recipe(steps: list[dict], data: Path, **extra) -> dict:
    return {"steps": steps, "calibration": {"data": str(data)}, "latency_samples": 1, "latency_tokens": 4,
            "eval": {"tasks": [{"data": str(data), "metrics": ["exact_match", "token_f1"], "max_new_tokens": 6}],
                     "batch_size": 8}, **extra}


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def linear_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    return {k: v for k, v in state.items() if k.endswith("proj.weight")}


def prompt_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("What is 1 plus 2?", return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_int8_dynamic_shrinks_reloads_and_reports(tiny_model, data, tmp_path, settings):
    from tuneforge.compression.steps.quantize import load_compressed

    before = digest(tiny_model)
    steps = [{"name": "quantize", "method": "int8_dynamic", "skip_modules": []}]
    report = compress_model(str(tiny_model), recipe(steps, data), output=tmp_path / "out", settings=settings)
    source, result = report.stages
    assert result.disk_mb < 0.4 * source.disk_mb  # int8 weights and embedding: about a quarter of fp32
    assert result.parameters == source.parameters and result.runs_on == ["cpu"]
    assert result.latency.requests == 1 and result.latency.per_token_p50_ms > 0
    assert set(result.quality["mem"]) == {"exact_match", "token_f1"} and len(result.tasks[0].per_example) == 8
    model, tokenizer = load_compressed(tmp_path / "out" / "model")
    assert isinstance(model.model.layers[0].mlp.up_proj, torch.ao.nn.quantized.dynamic.Linear)
    from transformers import AutoModelForCausalLM

    from tuneforge.compression.steps.quantize import _quantized

    fp32 = AutoModelForCausalLM.from_pretrained(tiny_model)
    reference, reloaded = prompt_logits(fp32, tokenizer), prompt_logits(model, tokenizer)
    again = prompt_logits(_quantized(fp32, "int8_dynamic", skip=[], group_size=128), tokenizer)
    assert torch.equal(reloaded, again)  # the saved int8 model is the quantized model, bit for bit
    similarity = torch.nn.functional.cosine_similarity(reloaded.flatten(), reference.flatten(), dim=0)
    assert 0.95 < similarity < 1.0  # close to fp32, not equal
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["summary"]["size_reduction"] > 0.6
    assert "| quantize int8_dynamic |" in (tmp_path / "out" / "report.md").read_text()
    assert digest(tiny_model) == before


def test_torchao_weight_only_and_bitsandbytes_nf4(tiny_model, data, tmp_path, settings):
    pytest.importorskip("torchao", reason="int8_weight_only needs the compress extra")
    from tuneforge.compression.steps.quantize import load_compressed

    ao = compress_model(str(tiny_model), recipe([{"name": "quantize", "method": "int8_weight_only"}], data),
                        output=tmp_path / "ao", settings=settings)
    assert ao.stages[1].disk_mb < 0.6 * ao.stages[0].disk_mb
    model, tokenizer = load_compressed(tmp_path / "ao" / "model")
    assert model.generate(**tokenizer("What", return_tensors="pt"), max_new_tokens=3, do_sample=False).shape[1] > 1
    nf4 = compress_model(str(tiny_model), recipe([{"name": "quantize", "method": "nf4"}], data),
                         output=tmp_path / "nf4", settings=settings)
    assert nf4.stages[1].disk_mb < 0.6 * nf4.stages[0].disk_mb
    config = json.loads((tmp_path / "nf4" / "model" / "config.json").read_text())
    assert config["quantization_config"]["bnb_4bit_quant_type"] == "nf4"


@pytest.mark.parametrize("method", ["magnitude", "wanda"])
def test_unstructured_pruning_zeroes_half_of_every_layer(tiny_model, data, tmp_path, method, settings):
    report = compress_model(str(tiny_model), recipe([{"name": "prune", "method": method, "sparsity": 0.5}], data),
                            output=tmp_path / "out", settings=settings)
    weights = linear_weights(tmp_path / "out" / "model")
    for name, weight in weights.items():
        assert (weight == 0).float().mean().item() == pytest.approx(0.5, abs=0.01), name
    if method == "wanda":  # per output row
        assert all(((w == 0).sum(1) == w.shape[1] // 2).all() for w in weights.values())
    assert report.stages[1].nonzero_parameters < 0.75 * report.stages[0].nonzero_parameters


def test_semi_structured_keeps_two_of_every_four(tiny_model, data, tmp_path, settings):
    compress_model(str(tiny_model), recipe([{"name": "prune", "method": "semi_structured", "score": "wanda"}], data),
                   output=tmp_path / "out", settings=settings)
    for weight in linear_weights(tmp_path / "out" / "model").values():
        groups = weight.reshape(weight.shape[0], -1, 4)
        assert ((groups != 0).sum(-1) <= 2).all()


@pytest.mark.parametrize(("method", "key", "expected"), [
    ("heads", "num_key_value_heads", 1), ("mlp_channels", "intermediate_size", 64), ("layers", "num_hidden_layers", 1)])
def test_structured_pruning_makes_the_saved_model_smaller(tiny_model, data, tmp_path, method, key, expected, settings):
    from transformers import AutoModelForCausalLM

    report = compress_model(str(tiny_model), recipe([{"name": "prune", "method": method, "sparsity": 0.5}], data),
                            output=tmp_path / "out", settings=settings)
    folder = tmp_path / "out" / "model"
    assert json.loads((folder / "config.json").read_text())[key] == expected
    source, result = report.stages
    assert result.parameters < source.parameters and result.disk_mb < source.disk_mb
    model = AutoModelForCausalLM.from_pretrained(folder)  # the smaller shapes load as a plain model
    assert sum(p.numel() for p in model.parameters()) == result.parameters
    assert result.tasks[0].per_example[0].prediction is not None


def test_distilled_student_has_half_the_layers_and_learns_from_the_teacher(tiny_model, data, tmp_path, settings):
    report = compress_model(str(tiny_model), recipe(
        [{"name": "distill", "data": str(data), "max_steps": 12, "learning_rate": 5e-3, "batch_size": 4}], data),
        output=tmp_path / "out", settings=settings)
    details = report.stages[1].details
    assert details["student_layers"] == 1 and details["initialized_from_layers"] == [1]
    assert details["kl_to_teacher_after"] < 0.5 * details["kl_to_teacher_before"]
    config = json.loads((tmp_path / "out" / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 1 and config["use_cache"] is True  # generation keeps its KV cache


def test_gguf_export_round_trips_and_quantizes(tiny_model, data, tmp_path, settings):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sizes = {}
    for quantization in ("f32", "q8_0", "q4_1", "q4_0"):
        out = tmp_path / quantization
        report = compress_model(str(tiny_model), recipe(
            [{"name": "export", "format": "gguf", "quantization": quantization}], data, eval=None, latency_samples=0),
            output=out, settings=settings)
        sizes[quantization] = report.stages[1].disk_mb
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    reference = prompt_logits(AutoModelForCausalLM.from_pretrained(tiny_model), tokenizer)
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "f32" / "model", gguf_file="model.f32.gguf")
    assert torch.allclose(prompt_logits(back, tokenizer), reference, atol=1e-5)  # names and rotary order right
    assert sizes["q8_0"] < 0.3 * sizes["f32"] and sizes["q4_0"] < sizes["q4_1"] < 0.25 * sizes["f32"]


def test_adapter_is_merged_before_compressing(tiny_model, data, tmp_path, settings):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "adapter")  # as a run's adapter/ has
    report = compress_model(str(tmp_path / "adapter"), recipe(
        [{"name": "export", "format": "gguf", "quantization": "f32"}], data, eval=None, latency_samples=0),
        output=tmp_path / "out", settings=settings)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert report.stages[0].parameters == sum(p.numel() for p in plain.parameters())  # no adapter weights left
    merged = peft_model.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    back = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model", gguf_file="model.f32.gguf")
    merged_logits = prompt_logits(merged, tokenizer)
    assert torch.allclose(prompt_logits(back, tokenizer), merged_logits, atol=1e-4)
    assert not torch.allclose(prompt_logits(plain, tokenizer), merged_logits, atol=1e-2)  # the adapter mattered


# Bad input: a clear error before any work; no output folder; the source untouched.


def _refused(model: Path, steps: list[dict], data: Path, tmp_path: Path, error: type, *needles: str, **extra):
    before = digest(model)
    with pytest.raises(error) as caught:
        compress_model(str(model), recipe(steps, data, **extra), output=tmp_path / "out", settings=Settings.from_env())
    for needle in needles:
        assert needle in str(caught.value)
    assert not (tmp_path / "out").exists() and digest(model) == before
    return caught.value


def test_gguf_export_of_an_unsupported_architecture_is_refused(tmp_path, data):
    from fixtures.tiny import build_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(
        tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    error = _refused(tmp_path / "gpt2", [{"name": "export", "format": "gguf"}], data, tmp_path, ConfigError,
                     "not 'gpt2'", "steps.0.format")
    assert "onnx" in error.hint


def test_two_four_on_a_width_not_a_multiple_of_four_is_refused(tmp_path, data):
    from fixtures.tiny import build_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=66, intermediate_size=130, num_hidden_layers=1,
                         num_attention_heads=3, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "odd")
    tokenizer.save_pretrained(tmp_path / "odd")
    _refused(tmp_path / "odd", [{"name": "prune", "method": "semi_structured"}], data, tmp_path, ConfigError,
             "multiples of 4", "hidden_size", "steps.0.method")


def test_missing_calibration_data_is_refused(tiny_model, data, tmp_path):
    _refused(tiny_model, [{"name": "prune", "method": "wanda"}], data, tmp_path, DataError, "calibration data",
             "absent.jsonl", calibration={"data": str(tmp_path / "absent.jsonl")})
    _refused(tiny_model, [{"name": "prune", "method": "wanda"}], data, tmp_path, ConfigError, "needs calibration",
             calibration=None)


def test_quantize_before_another_step_is_refused(tiny_model, data, tmp_path):
    _refused(tiny_model, [{"name": "quantize"}, {"name": "prune"}], data, tmp_path, ConfigError, "must be the last")


def test_cpu_only_machine_refuses_int4_weight_only(tiny_model, data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU runs int4_weight_only")
    _refused(tiny_model, [{"name": "quantize", "method": "int4_weight_only"}], data, tmp_path, ConfigError,
             "needs a CUDA GPU")


def test_cli_compresses_and_refuses_a_bad_recipe_cleanly(tiny_model, data, tmp_path, settings):
    import os
    import subprocess
    import sys

    import yaml

    def tuneforge(*args):
        return subprocess.run([sys.executable, "-m", "tuneforge.cli.app", *map(str, args)], capture_output=True,
                              text=True, env=dict(os.environ), timeout=300)

    def assert_clean_error(result, *needles):
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "error:" in result.stderr and "hint:" in result.stderr
        for needle in needles:
            assert needle in result.stderr, result.stderr

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(recipe([{"name": "export", "format": "gguf", "quantization": "q8_0"}], data,
                                          latency_samples=0)))
    result = tuneforge("compress", tiny_model, "--recipe", good, "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "export gguf" in result.stdout and (tmp_path / "out" / "model" / "model.q8_0.gguf").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - name: prune\n    method: wanda\n")
    assert_clean_error(tuneforge("compress", tiny_model, "--recipe", bad, "--output", tmp_path / "bad-out"),
                       "needs calibration data", "bad.yaml")
    with pytest.raises(ConflictError, match="already holds files"):  # a second run never replaces the first
        compress_model(str(tiny_model), str(good), output=tmp_path / "out", settings=settings)


def test_onnx_export_matches_torch_and_int8_shrinks(tiny_model, data, tmp_path, settings):
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneforge.compression.export.onnx_export import OnnxCausalLM

    from tuneforge.compression.export.onnx_export import _quantize

    runs = {}
    for quantization in (None, "int8_static"):  # static int8 calibrates on the recipe's calibration data
        runs[quantization] = compress_model(str(tiny_model), recipe(
            [{"name": "export", "format": "onnx", "quantization": quantization}], data),
            output=tmp_path / str(quantization), settings=settings)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    fp32 = AutoModelForCausalLM.from_pretrained(tiny_model)
    exported = tmp_path / "None" / "model" / "model.onnx"
    assert torch.allclose(prompt_logits(OnnxCausalLM(exported, config=fp32.config), tokenizer),
                          prompt_logits(fp32, tokenizer), atol=1e-4)
    source, onnx = runs[None].stages
    assert answers_of(onnx) == answers_of(source)  # greedy answers through onnxruntime are torch's
    static = runs["int8_static"].stages[1]
    assert static.disk_mb < 0.75 * onnx.disk_mb and static.latency.per_token_p50_ms > 0
    assert len(answers_of(static)) == 8
    _quantize(exported, tmp_path / "dynamic.onnx", "int8_dynamic", [])
    assert (tmp_path / "dynamic.onnx").stat().st_size < 0.75 * exported.stat().st_size
    dynamic = OnnxCausalLM(tmp_path / "dynamic.onnx", config=fp32.config)
    prompt = tokenizer(["What is"], return_tensors="pt")
    assert dynamic.generate(**prompt, max_new_tokens=3, min_new_tokens=3).shape[1] == prompt["input_ids"].shape[1] + 3


def answers_of(stage) -> list[str]:
    return [e.prediction for e in stage.tasks[0].per_example]


def test_recovery_fine_tune_after_pruning_keeps_the_zeros(tiny_model, data, tmp_path, settings):
    steps = [{"name": "prune", "method": "magnitude", "sparsity": 0.5,
              "recover": {"data": str(data), "method": "lora", "epochs": 2, "learning_rate": 1e-2, "batch_size": 4}}]
    report = compress_model(str(tiny_model), recipe(steps, data, eval=None, latency_samples=0), output=tmp_path / "out",
                            settings=settings)
    recovery = report.stages[1].details["recovery"]
    assert recovery["method"] == "lora" and recovery["steps"] == 4 and recovery["train_loss"] > 0
    weights = linear_weights(tmp_path / "out" / "model")
    assert all((w == 0).float().mean().item() >= 0.5 - 0.01 for w in weights.values())  # merged LoRA re-masked
    assert not (tmp_path / "out" / "model" / "adapter_config.json").exists()


def test_llama_cpp_runs_a_head_pruned_gguf_export_like_torch(tiny_model, data, tmp_path, settings):
    require_llama_cpp()  # installed, and not a build that crashes on llama.cpp's own GGUF files
    steps = [{"name": "prune", "method": "heads", "sparsity": 0.5},
             {"name": "export", "format": "gguf", "quantization": "f32"}]
    report = compress_model(str(tiny_model), recipe(steps, data), output=tmp_path / "out", settings=settings)
    pruned, exported = report.stages[1:]
    assert exported.details["measured_with"].startswith("llama.cpp")
    assert answers_of(exported) == answers_of(pruned)  # same weights, same greedy answers in llama.cpp
    assert any(answers_of(exported))


def test_a_llama_cpp_build_that_crashes_does_not_take_the_export_down(tiny_model, data, tmp_path, monkeypatch,
                                                                      settings):
    """A llama-cpp-python build that segfaults (0.3.36 built on some machines does) is probed in a child process:
    the export is kept and measured through transformers' GGUF loader, with the reason in the report."""
    broken = tmp_path / "broken-build"
    (broken / "llama_cpp").mkdir(parents=True)
    (broken / "llama_cpp" / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.syspath_prepend(str(broken))  # find_spec sees it; only the probe's child imports it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")]))
    steps = [{"name": "export", "format": "gguf", "quantization": "f32"}]
    report = compress_model(str(tiny_model), recipe(steps, data, latency_samples=0), output=tmp_path / "out",
                            settings=settings)
    measured = report.stages[-1].details["measured_with"]
    assert measured.startswith("transformers' GGUF loader") and "crashed (SIGSEGV)" in measured, measured
    assert (tmp_path / "out" / "model" / "model.f32.gguf").is_file()
