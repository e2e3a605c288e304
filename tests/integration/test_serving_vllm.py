"""``--engine vllm`` on a CUDA machine with the vllm extra: adapters of one base in one vLLM batch, each with
its own greedy answer (as when it runs alone). Skipped (marker ``gpu``) where there is no GPU or no vLLM."""

from __future__ import annotations

import importlib.util

import pytest

from fixtures.serving import make_lora_adapter
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import GenerationRequest, Stream

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def cuda_and_vllm():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed (pip install 'tuneforge[vllm]')")


def test_adapters_batch_together_with_their_own_answers(tmp_path):
    from fixtures.tiny import build_tiny_llama
    from tuneforge.serving.vllm_engine import VllmEngine

    tiny_model = build_tiny_llama(tmp_path / "tiny", hidden=128)  # head size 32: vLLM's attention has no 16
    adapters = [make_lora_adapter(tiny_model, tmp_path / f"lora-{i}", seed=i) for i in (1, 2)]
    engine = VllmEngine(tiny_model, config=ServingConfig(engine="vllm", adapter_cache=2))
    try:
        ids = engine.encode("What is 2 plus 3?", add_special_tokens=True)
        params = SamplingParams(max_tokens=6, temperature=0)

        def submit(adapter):
            return engine.submit(GenerationRequest(ids, params, adapter, Stream()))

        def text(stream):
            deltas = list(stream)
            assert deltas[-1].error is None and deltas[-1].finish_reason in ("stop", "length")
            return "".join(d.text for d in deltas)

        alone = [text(submit(adapter)) for adapter in (None, *adapters)]
        together = [text(s) for s in [submit(adapter) for adapter in (None, *adapters, *adapters)]]
        assert len(set(alone)) == 3  # each adapter is applied
        assert together == alone + alone[1:]  # mixed in one batch, each row keeps its own adapter's answer
        assert engine.loaded_adapters() == [str(a) for a in adapters]
    finally:
        engine.close()
