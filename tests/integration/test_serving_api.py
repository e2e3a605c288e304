"""The inference server through the official openai SDK (sync, async, streaming) on a real uvicorn:
base models, adapters batched together, a fine-tuning job's ft: model, hot swap, errors."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx2 as httpx
import openai
import pytest

from fixtures.platform import running_server, wait_for, write_chat
from fixtures.serving import make_lora_adapter
from tuneforge.serving.config import ServingConfig
from tuneforge.settings import Settings

ASK = [{"role": "user", "content": "What is 2 plus 3?"}]
GREEDY = {"temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("adapters")
    return [make_lora_adapter(tiny_model, root / f"lora-{i}", seed=i) for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, adapters):
    home = tmp_path_factory.mktemp("serving")
    settings = Settings(home=str(home), database_url=f"sqlite:///{home / 'tuneforge.db'}", concurrency=1,
                        poll_seconds=0.2, heartbeat_seconds=0.3, base_models={"tiny-llama": str(tiny_model)})
    config = ServingConfig(models={"tuned-a": str(adapters[0]), "tuned-b": str(adapters[1])}, max_batch=8,
                           batch_wait_ms=20, adapter_cache=2)
    with running_server(settings, serving=config) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)


def run_in_a_fresh_loop(make):
    """asyncio.run in a thread of its own: a loop left running in this thread by another test (Playwright's sync
    API runs one) must not make the async client's test fail."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(value=asyncio.run(make())))
    thread.start()
    thread.join(timeout=300)
    return result["value"]


def answer(client, model, **extra):
    return client.chat.completions.create(model=model, messages=ASK, **{**GREEDY, **extra})


def test_sync_chat_completion_and_models(client, tiny_model, settings):
    from tuneforge.services.models import generate

    reply = answer(client, "tiny-llama")
    assert reply.object == "chat.completion" and reply.model == "tiny-llama"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 8 and reply.usage.total_tokens == reply.usage.prompt_tokens + \
        reply.usage.completion_tokens
    expected = generate(str(tiny_model), settings=settings, messages=ASK, max_new_tokens=8)
    assert reply.choices[0].message.content.strip() == expected  # the same greedy answer as 'tuneforge generate'
    assert answer(client, "tuned-a").choices[0].message.content != reply.choices[0].message.content
    ids = [m.id for m in client.models.list()]
    assert {"tiny-llama", "tuned-a", "tuned-b"} <= set(ids) and client.models.retrieve("tuned-a").id == "tuned-a"
    text = client.completions.create(model="tuned-b", prompt="name=Maria", temperature=0, max_tokens=5, n=2)
    assert text.object == "text_completion" and len(text.choices) == 2 and text.choices[0].text == text.choices[1].text
    streamed = client.completions.create(model="tuned-b", prompt="name=Maria", temperature=0, max_tokens=5, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == text.choices[0].text


def test_stream_joins_to_the_same_text(client):
    whole = answer(client, "tuned-b").choices[0].message.content
    chunks = list(answer(client, "tuned-b", stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    sampled = [answer(client, "tuned-b", temperature=1.0, seed=11, max_tokens=12).choices[0].message.content
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seed makes sampling repeatable
    stop = whole[2:4]
    if stop.strip():
        cut = answer(client, "tuned-b", stop=[stop]).choices[0]
        assert cut.finish_reason == "stop" and cut.message.content == whole[:whole.index(stop)]


def test_async_clients_over_two_adapters_get_their_own_answers(server, client):
    alone = {m: answer(client, m).choices[0].message.content for m in ("tiny-llama", "tuned-a", "tuned-b")}
    assert len(set(alone.values())) == 3
    shared = lambda: _metric(server, "tuneforge_inference_batch_size_count") - _metric(  # noqa: E731
        server, 'tuneforge_inference_batch_size_bucket{le="1.0"}')
    before = shared()

    async def many():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"]) as aclient:
            calls = [aclient.chat.completions.create(model=m, messages=ASK, **GREEDY) for m in list(alone) * 3]
            return await asyncio.gather(*calls)

    replies = run_in_a_fresh_loop(many)
    assert [r.choices[0].message.content for r in replies] == [alone[r.model] for r in replies]
    assert shared() > before  # the concurrent requests shared batches (mixed adapters in one forward pass)
    assert _metric(server, 'tuneforge_inference_loaded_adapters{') == 2
    assert _metric(server, 'tuneforge_inference_requests_total{model="tuned-a",status="ok"}') >= 4


def test_a_finished_jobs_model_answers_and_other_projects_get_404(server, client, tmp_path, settings):
    from tuneforge.services.models import generate

    with write_chat(tmp_path / "train.jsonl").open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=training.id, suffix="adder",
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
        extra_body={"tuneforge": {"train": {"precision": "fp32", "learning_rate": 0.05}}})
    job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("succeeded", "failed") and j,
                   timeout=180, what="the job")
    assert job.status == "succeeded", job.error
    served = answer(client, job.fine_tuned_model).choices[0].message.content
    run_adapter = settings.__class__(home=server.settings.home).run_dir(job.id) / "adapter"
    assert served.strip() == generate(str(run_adapter), settings=server.settings, messages=ASK, max_new_tokens=8)
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["other"], max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        answer(other, job.fine_tuned_model)
    assert caught.value.code == "model_not_found"


def test_hot_swap_while_four_clients_stream(server, client, adapters):
    from tuneforge.services.platform import open_platform
    from tuneforge.storage.records import ModelRecord

    texts, ends, errors = [], [], []

    def stream():
        try:
            chunks = answer(client, "tuned-a", stream=True, max_tokens=200)
            pieces = [c for c in chunks if c.choices]
            texts.append(("".join(c.choices[0].delta.content or "" for c in pieces), pieces[-1].choices[0].finish_reason))
            ends.append(time.monotonic())
        except Exception as exc:  # noqa: BLE001 - the assertion below lists them
            errors.append(exc)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: _metric(server, "tuneforge_inference_batch_size_count") and _running(server) >= 4,
             every=0.01, what="4 streams generating")
    platform = open_platform(server.settings)  # a new model appears (as when a job finishes or an alias moves)
    platform.store.add_model(ModelRecord(id="ft:tiny-llama:acme:swap:1", project="acme", job_id="ftjob-swap",
                                         base_model="tiny-llama", path=str(adapters[2])))
    platform.close()
    swapped = answer(client, "ft:tiny-llama:acme:swap:1").choices[0].message.content  # loads lora-2 mid-batch
    swapped_at = time.monotonic()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and len(texts) == 4 and len(set(texts)) == 1 and texts[0][1] == "length"
    assert swapped_at < min(ends)  # the new adapter loaded and answered while the 4 streams ran
    assert swapped != answer(client, "tuned-a").choices[0].message.content
    alone = answer(client, "ft:tiny-llama:acme:swap:1").choices[0].message.content
    assert alone == swapped  # joining a running batch changed nothing in its answer


@pytest.mark.parametrize(("extra", "param"), [
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 0}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"extra_body": {"best_of": 2}}, "best_of"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"logprobs": True}, "logprobs"),
])
def test_bad_parameters_are_400_naming_the_field(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        answer(client, "tiny-llama", **extra)
    assert caught.value.status_code == 400 and caught.value.body["param"] == param


def test_unknown_model_and_context_errors(client):
    with pytest.raises(openai.NotFoundError) as caught:
        answer(client, "no-such-model")
    assert caught.value.code == "model_not_found" and caught.value.body["param"] == "model"
    long = [{"role": "user", "content": "name=Maria Lopez; age=34; " * 40}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny-llama", messages=long, max_tokens=4)
    assert caught.value.code == "context_length_exceeded" and caught.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        answer(client, "tiny-llama", max_tokens=10_000)
    assert caught.value.code == "context_length_exceeded" and caught.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny-llama", prompt="", max_tokens=2)
    assert caught.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as caught:  # a builtin encoder (BERT) cannot generate
        answer(client, "minilm-l6")
    assert caught.value.body["param"] == "model" and "encoder" in caught.value.message
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="tf-wrong", max_retries=0).models.list()


def _running(server) -> float:
    """Sequences generating now (the last batch size observed is not enough: read the engine's gauge)."""
    return _metric(server, "tuneforge_inference_running_sequences")


def _metric(server, prefix: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_key}"}).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_tuneforge_serve_command(tmp_path, tiny_model, adapters):
    import os
    import subprocess
    import sys

    from fixtures.postgres import free_port

    env = {**os.environ, "TUNEFORGE_HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "tuneforge.cli.app"]
    missing = subprocess.run([*cli, "serve", str(tiny_model), "--engine", "vllm"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert missing.returncode == 1 and "pip install 'tuneforge[vllm]'" in missing.stderr
    from tuneforge.services.platform import create_api_key, open_platform

    platform = open_platform(Settings(home=str(tmp_path)))  # the database 'tuneforge serve' opens under its home
    key = create_api_key(platform, project="team")
    platform.close()
    port = free_port()
    process = subprocess.Popen([*cli, "serve", f"bot={adapters[0]}", "--port", str(port), "--max-batch", "4"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)

        def up():
            try:
                return client.models.retrieve("bot")
            except openai.APIConnectionError:
                assert process.poll() is None, process.stderr.read()
                return None

        wait_for(up, timeout=120, every=0.3, what="tuneforge serve")
        reply = client.chat.completions.create(model="bot", messages=ASK, **GREEDY)
        assert reply.model == "bot" and reply.choices[0].message.content
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_registry_alias_moves_change_the_answer_with_no_restart(server, client, adapters):
    from tuneforge.services.platform import open_platform
    from tuneforge.services.registry import register, rollback_alias, set_alias

    platform = open_platform(server.settings)
    try:
        for adapter in adapters[:2]:
            register(platform, adapter, project="acme", name="bot", created_by="test")
        set_alias(platform, "bot", 1, "production", project="acme", actor="test")
        first, second = (answer(client, f"bot:{v}").choices[0].message.content for v in (1, 2))
        assert first != second and answer(client, "bot@production").choices[0].message.content == first
        assert answer(client, "bot@production").model == "bot:1"  # the version that answered
        set_alias(platform, "bot", 2, "production", project="acme", actor="test")  # deploy version 2
        assert answer(client, "bot@production").choices[0].message.content == second
        rollback_alias(platform, "bot", "production", project="acme", actor="test")
        assert answer(client, "bot@production").choices[0].message.content == first
    finally:
        platform.close()
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["other"], max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        answer(other, "bot@production")  # another project's registry is not visible
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        answer(client, "bot@staging")
