"""``--engine llamacpp``: a tiny base converted to GGUF, its LoRA adapters applied at run time by llama.cpp and
switched per request; greedy answers equal transformers + PEFT's (F32 GGUF), through the engine and through the
openai SDK. Skipped, with the reason, where the llama-cpp-python build cannot run llama.cpp's own GGUF."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx2 as httpx
import openai
import pytest

from fixtures.llamacpp import require_llama_cpp
from fixtures.platform import running_server
from fixtures.serving import make_lora_adapter
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import GenerationRequest, Stream
from tuneforge.settings import Settings

PROMPT = "What is 2 plus 3?"
TOKENS = 8


@pytest.fixture(scope="module", autouse=True)
def llama_cpp_runs():
    require_llama_cpp()


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("gguf-loras")
    return [make_lora_adapter(tiny_model, root / f"lora-{i}", seed=i) for i in (1, 2, 3)]


def torch_answer(base, adapter, ids: list[int]) -> list[int]:
    """transformers' greedy tokens (PEFT applies the adapter), the reference llama.cpp must reproduce."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
    return out[0, len(ids):].tolist()


def run(engine, ids, adapter, **params):
    stream = engine.submit(GenerationRequest(ids, SamplingParams(max_tokens=TOKENS, temperature=0, **params), adapter,
                                             Stream()))
    deltas = list(stream)
    assert deltas[-1].error is None, deltas[-1].error
    return "".join(d.text for d in deltas), deltas[-1]


def test_adapters_switch_per_request_with_transformers_greedy_answers(tiny_model, adapters):
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine(tiny_model, config=ServingConfig(engine="llamacpp", adapter_cache=2, threads=1,
                                                             gguf_quantization="f32"))
    try:
        ids = engine.encode(PROMPT, add_special_tokens=True)
        expected = {}
        for adapter in (None, adapters[0], adapters[1]):
            tokens = [t for t in torch_answer(tiny_model, adapter, ids)]
            expected[adapter] = engine.tokenizer.decode(tokens[:TOKENS], skip_special_tokens=True)
        assert len(set(expected.values())) == 3  # each adapter answers its own way
        engine.end_ids = set()  # compare whole answers: no early end-of-turn on a random model
        for adapter in (adapters[0], None, adapters[1], adapters[0], adapters[1], None):  # switches both ways
            text, last = run(engine, ids, adapter)
            assert text == expected[adapter], adapter
            assert last.finish_reason == "length" and last.tokens == TOKENS
        run(engine, ids, adapters[2])  # a third adapter: the least recently used one goes
        assert engine.loaded_adapters() == [str(adapters[1]), str(adapters[2])]
        assert run(engine, ids, adapters[0])[0] == expected[adapters[0]]  # and comes back on demand
        stop = expected[adapters[1]][3:5]
        text, last = run(engine, ids, adapters[1], stop=(stop,))
        assert last.finish_reason == "stop" and text == expected[adapters[1]][:expected[adapters[1]].find(stop)]
    finally:
        engine.close()
    assert not engine.workdir.exists()  # the converted files go with the engine


def test_a_gguf_export_with_its_separate_adapter_is_served_as_is(tmp_path, tiny_model, adapters):
    """``export: {format: gguf, adapter: separate}`` (what a registered GGUF version holds): the .gguf base and its
    adapter.gguf answer as the adapter folder does (the version's target: _gguf_target)."""
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine
    from tuneforge.services.compression import compress_model
    from tuneforge.services.serving import _gguf_target
    from tuneforge.settings import Settings

    from transformers import AutoTokenizer

    source = shutil.copytree(adapters[0], tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(source)  # as a run's adapter/ has
    steps = [{"name": "export", "format": "gguf", "quantization": "f32", "adapter": "separate"}]
    compress_model(str(source), {"steps": steps, "latency_samples": 0}, output=tmp_path / "out",
                   settings=Settings.from_env())
    target = _gguf_target("bot", tmp_path / "out" / "model", version="bot:2")
    assert target.base.name == "model.f32.gguf" and target.adapter.name == "adapter.gguf"
    config = ServingConfig(engine="llamacpp", threads=1, gguf_quantization="f32")
    texts = []
    for base, adapter in ((target.base, target.adapter), (tiny_model, adapters[0])):
        engine = LlamaCppEngine(base, config=config)
        try:
            engine.end_ids = set()
            texts.append(run(engine, engine.encode(PROMPT, add_special_tokens=True), adapter)[0])
        finally:
            engine.close()
    assert texts[0] == texts[1] and texts[0]


def test_openai_sdk_over_the_llamacpp_engine(tmp_path, tiny_model, adapters):
    settings = Settings(home=str(tmp_path), database_url=f"sqlite:///{tmp_path / 'tuneforge.db'}", concurrency=0,
                        base_models={"tiny-llama": str(tiny_model)})
    config = ServingConfig(engine="llamacpp", models={"tuned-a": str(adapters[0]), "tuned-b": str(adapters[1])},
                           threads=1, gguf_quantization="q8_0")
    with running_server(settings, serving=config, workers=0) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)
        asked = {"messages": [{"role": "user", "content": PROMPT}], "temperature": 0, "max_tokens": TOKENS}
        answers = {m: client.chat.completions.create(model=m, **asked).choices[0].message.content
                   for m in ("tiny-llama", "tuned-a", "tuned-b")}
        assert len(set(answers.values())) == 3
        streamed = client.chat.completions.create(model="tuned-a", stream=True, **asked)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == answers["tuned-a"]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", **asked)
        models = ["tuned-a", "tuned-b", "tiny-llama", "tuned-a"] * 2
        with ThreadPoolExecutor(len(models)) as pool:  # concurrent requests share llama.cpp batches
            together = list(pool.map(lambda m: client.chat.completions.create(model=m, **asked), models))
        assert [r.choices[0].message.content for r in together] == [answers[m] for m in models]
        metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}).text
        buckets = dict(re.findall(r'tuneforge_inference_batch_size_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics))
        assert float(buckets["+Inf"]) > float(buckets.get("1", buckets.get("1.0")))  # batches of more than one


def test_a_max_batch_whose_kv_cache_cannot_fit_is_refused_before_llama_cpp_allocates(tiny_model, monkeypatch):
    """The estimate (from the converted GGUF's metadata) is checked against the memory available (here made 10 MB)
    before the context exists: the error names --max-batch and the figures; nothing is left behind."""
    from tuneforge.errors import TuneforgeError
    from tuneforge.serving import llamacpp_engine, llamacpp_memory

    monkeypatch.setattr(llamacpp_memory, "available_bytes", lambda: 10_000_000)
    monkeypatch.setattr(llamacpp_engine, "BatchContext", lambda *a, **k: pytest.fail("the context was created"))
    before = set(llamacpp_engine.Path(llamacpp_engine.tempfile.gettempdir()).glob("tuneforge-llamacpp-*"))
    with pytest.raises(TuneforgeError) as refused:
        llamacpp_engine.LlamaCppEngine(tiny_model, config=ServingConfig(engine="llamacpp", max_batch=512, threads=1,
                                                                        gguf_quantization="f32"))
    assert "--max-batch 512 needs about" in refused.value.message and "only 10 MB" in refused.value.message
    assert "lower --max-batch (about " in refused.value.hint
    after = set(llamacpp_engine.Path(llamacpp_engine.tempfile.gettempdir()).glob("tuneforge-llamacpp-*"))
    assert after <= before  # the engine's folder went with it
    from tuneforge.serving.config import ServingConfig as Config
    from tuneforge.serving.engines import ModelServer

    with pytest.raises(TuneforgeError, match="--max-batch 512"):  # what 'tuneforge serve' checks before the port opens
        ModelServer(Config(engine="llamacpp", max_batch=512)).check(tiny_model)
