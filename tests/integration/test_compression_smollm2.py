"""The real SmolLM2-135M exported for serving runtimes: slow, and run by CI."""

from __future__ import annotations

import importlib.util

import pytest
from fixtures.llamacpp import require_llama_cpp

from tuneforge.services.compression import compress_model

pytestmark = pytest.mark.slow


def answers(stage) -> list[str]:
    return [e.prediction for e in stage.tasks[0].per_example]


def test_smollm2_gguf_q8_0_runs_in_llama_cpp_with_the_same_greedy_answers(tmp_path, settings):
    require_llama_cpp()  # installed, and not a build that crashes on llama.cpp's own GGUF files
    recipe = {"steps": [{"name": "export", "format": "gguf", "quantization": "q8_0"}], "latency_samples": 1,
              "latency_tokens": 8,
              "eval": {"tasks": [{"builtin": "arithmetic", "limit": 12}, {"builtin": "profile-extraction", "limit": 4,
                                                                           "max_new_tokens": 24}]}}
    report = compress_model("smollm2-135m", recipe, output=tmp_path / "out", settings=settings)
    source, gguf = report.stages
    assert gguf.details["measured_with"].startswith("llama.cpp")
    assert gguf.disk_mb < 0.3 * source.disk_mb  # Q8_0: 8.5 bits per weight against 32
    same = [a == b for a, b in zip(answers(source), answers(gguf))]
    assert sum(same) >= 0.8 * len(same), list(zip(answers(source), answers(gguf)))
    profile = [task for task in gguf.tasks if task.name == "profile-extraction"][0]
    assert all(e.prediction for e in profile.per_example)  # llama.cpp answered every prompt
    assert gguf.latency.per_token_p50_ms > 0


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnxruntime is not installed (pip install 'tuneforge[onnx]')")
def test_smollm2_onnx_runs_in_onnxruntime_with_the_same_greedy_answers(tmp_path, settings):
    recipe = {"steps": [{"name": "export", "format": "onnx"}], "latency_samples": 0,
              "eval": {"tasks": [{"builtin": "arithmetic", "limit": 6}]}}
    report = compress_model("smollm2-135m", recipe, output=tmp_path / "out", settings=settings)
    source, onnx = report.stages
    assert onnx.details["runtime"].startswith("onnxruntime") and (tmp_path / "out" / "model" / "model.onnx").is_file()
    assert answers(onnx) == answers(source)
