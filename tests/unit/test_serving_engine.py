"""The serving library without a server: stop handling, sampling, and the torch engine's batching and
adapter cache on a tiny model with two random LoRA adapters."""

from __future__ import annotations

import pytest

from fixtures.serving import make_lora_adapter
from tuneforge.serving.config import SamplingParams, ServingConfig
from tuneforge.serving.engine import Delta, GenerationRequest, Stream
from tuneforge.serving.sampling import TextTracker, next_tokens, top_p_filter


class Chars:
    """A tokenizer whose token ids are character codes."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def feed(text: str, *, stop=(), max_tokens=50, end=None):
    tracker = TextTracker(Chars(), SamplingParams(max_tokens=max_tokens, stop=tuple(stop)), {0})
    pieces = []
    for char in text:
        pieces.append(tracker.add(0 if char == end else ord(char)))
        if tracker.finish_reason:
            break
    return pieces, tracker.finish_reason


def test_stop_strings_are_held_back_and_cut():
    assert feed("abENDcd", stop=["END"]) == (["a", "b", "", "", ""], "stop")
    pieces, reason = feed("aENx", stop=["END"], max_tokens=4)
    assert pieces == ["a", "", "", "ENx"] and reason == "length"  # a prefix that did not become a stop is released
    assert feed("ab$c", end="$") == (["a", "b", ""], "stop")  # an end-of-turn token
    assert feed("abcdef", max_tokens=3) == (["a", "b", "c"], "length")
    assert "".join(feed("x<|y|>z", stop=["|>", "<|"])[0]) == "x"  # the earliest stop wins


def test_streams_of_one_loop_get_a_burst_of_deltas_in_one_callback_in_order():
    import asyncio
    import threading

    async def main():
        loop = asyncio.get_running_loop()
        streams = [Stream(loop) for _ in range(3)]
        scheduled = []
        original = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *args: scheduled.append(args) or original(*args)  # type: ignore[method-assign]

        def engine():  # one step of three sequences, then their last step
            for step in range(2):
                for index, stream in enumerate(streams):
                    stream.put(Delta(f"{index}.{step} ", step + 1, "stop" if step else None))

        thread = threading.Thread(target=engine)
        thread.start()
        thread.join()  # the loop is held here: all six deltas are put before it delivers any
        texts = ["".join([d.text async for d in stream.deltas()]) for stream in streams]
        engine()  # and again, read as they come
        texts += ["".join([d.text async for d in stream.deltas()]) for stream in streams]
        return texts, len(scheduled), streams[0].first_token_at is not None

    texts, callbacks, timed = asyncio.run(main())
    assert texts == ["0.0 0.1 ", "1.0 1.1 ", "2.0 2.1 "] * 2 and timed
    assert callbacks == 2  # twelve deltas in two bursts: the loop woke once per burst, not once per delta


def test_top_p_and_seeded_sampling():
    import torch

    kept = top_p_filter(torch.tensor([0.2, 0.5, 0.3]), 0.6)
    assert torch.allclose(kept, torch.tensor([0.0, 0.625, 0.375]))
    logits = torch.randn(2, 50)
    params = [SamplingParams(temperature=1.0, seed=3), SamplingParams(temperature=0)]

    def draw():
        generators = [torch.Generator().manual_seed(3), None]
        return [next_tokens(logits.clone(), params, generators).tolist() for _ in range(5)]

    first = draw()
    assert first == draw() and all(row[1] == int(logits[1].argmax()) for row in first)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("loras")
    return [make_lora_adapter(tiny_model, root / f"lora-{i}", seed=i) for i in (1, 2)]


def texts(streams):
    return ["".join(d.text for d in stream) for stream in streams]


def test_mixed_adapter_batches_and_late_joiners_keep_single_request_answers(tiny_model, adapters):
    from tuneforge.data.tokenize import render_prompt
    from tuneforge.serving.torch_engine import TorchEngine

    engine = TorchEngine(tiny_model, config=ServingConfig(max_batch=8, batch_wait_ms=30, adapter_cache=2))
    try:
        tok = engine.tokenizer
        prompts = [tok(render_prompt([{"role": "user", "content": q}], tok), add_special_tokens=False)["input_ids"]
                   for q in ("What is 1 plus 2?", "name=Maria Lopez; age=34; city=Lisbon", "x")]
        greedy = SamplingParams(max_tokens=10, temperature=0)
        cases = [(a, p) for a in (None, *adapters) for p in range(3)]

        def submit(adapter, prompt, params=greedy):
            return engine.submit(GenerationRequest(prompts[prompt], params, adapter))

        alone = {case: texts([submit(*case)])[0] for case in cases}
        assert len({alone[(a, 0)] for a in (None, *adapters)}) == 3  # each adapter answers differently
        together = texts([submit(*case) for case in cases])  # 9 rows, three adapters (base too), one batch
        assert together == [alone[case] for case in cases]
        first = iter(submit(adapters[0], 1, SamplingParams(max_tokens=120, temperature=0)))
        head = next(first).text
        late = [submit(*case) for case in cases]  # join the running batch between its steps
        assert texts(late) == [alone[case] for case in cases]
        assert head + "".join(d.text for d in first) == texts([submit(adapters[0], 1, SamplingParams(
            max_tokens=120, temperature=0))])[0]
        assert engine.stats.batch_sizes.count - engine.stats.batch_sizes.counts[0] >= 2  # batches of 2+ sequences
    finally:
        engine.close()


def test_adapter_cache_of_one_serves_two_adapters_in_turn(tiny_model, adapters):
    from tuneforge.serving.torch_engine import TorchEngine

    engine = TorchEngine(tiny_model, config=ServingConfig(max_batch=8, batch_wait_ms=30, adapter_cache=1))
    try:
        params = SamplingParams(max_tokens=6, temperature=0)
        alone = [texts([engine.submit(GenerationRequest([5, 6, 7], params, a))])[0] for a in adapters]
        loads = engine.cache.loads
        both = texts([engine.submit(GenerationRequest([5, 6, 7], params, a)) for a in (*adapters, *adapters)])
        assert both == alone * 2  # the second adapter waited for the first one's batch, then replaced it
        assert engine.loaded_adapters() == [str(adapters[1])] and engine.cache.loads == loads + 2
    finally:
        engine.close()


def test_a_cancelled_sequence_leaves_the_batch(tiny_model):
    import time

    from tuneforge.serving.torch_engine import TorchEngine

    engine = TorchEngine(tiny_model, config=ServingConfig(batch_wait_ms=0))
    try:
        stream = engine.submit(GenerationRequest([5, 6, 7], SamplingParams(max_tokens=240, temperature=0)))
        next(iter(stream))
        stream.cancel()  # what the API does when the client hangs up
        deadline = time.monotonic() + 30
        while engine.activity() != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.activity() == (0, 0) and stream.sync_queue.qsize() < 200  # stopped long before 240 tokens
        assert texts([engine.submit(GenerationRequest([5, 6], SamplingParams(max_tokens=3, temperature=0)))])
    finally:
        engine.close()
