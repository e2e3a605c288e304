"""The platform driven through the official openai SDK: a real server on 127.0.0.1, a real SQLite
database, real tiny training jobs in their own processes."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx2 as httpx
import openai
import pytest

from fixtures.platform import CHAT, running_server, wait_for, write_chat
from tuneforge.settings import Settings

FP32 = {"precision": "fp32"}  # bf16 autocast is slow on CPUs without AMX
HYPER = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    home = tmp_path_factory.mktemp("platform")
    settings = Settings(
        home=str(home), database_url=f"sqlite:///{home / 'tuneforge.db'}", concurrency=2, poll_seconds=0.2,
        heartbeat_seconds=0.3, max_upload_bytes=100_000, base_models={"tiny-llama": str(tiny_model)},
    )
    with running_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)


@pytest.fixture(scope="module")
def training_file(client, tmp_path_factory):
    path = write_chat(tmp_path_factory.mktemp("data") / "train.jsonl")
    with path.open("rb") as handle:
        return client.files.create(file=handle, purpose="fine-tune")


def supervised(**hyper):
    return {"type": "supervised", "supervised": {"hyperparameters": {**HYPER, **hyper}}}


def final(client, job_id, timeout=120.0):
    return wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in
                    ("succeeded", "failed", "cancelled") and j, timeout=timeout, what=f"job {job_id} to end")


def test_upload_train_and_inspect_a_job(server, client, training_file):
    assert training_file.purpose == "fine-tune" and training_file.bytes > 0 and training_file.status == "processed"
    assert client.files.retrieve(training_file.id).filename == "train.jsonl"
    assert client.files.content(training_file.id).content.decode().splitlines()[0] == json.dumps(CHAT[0])

    started = time.perf_counter()
    job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id, method=supervised(),
                                         suffix="adder", seed=7, extra_body={"tuneforge": {"train": FP32}})
    assert job.status == "queued" and job.seed == 7 and job.hyperparameters.n_epochs == 2
    job = final(client, job.id)
    print(f"\njobs.create -> succeeded: {time.perf_counter() - started:.2f} s")
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny-llama:acme:adder:{job.id.split('-', 1)[1][:12]}"
    assert job.trained_tokens > 0 and job.finished_at >= job.created_at and job.error is None

    rows = list(csv.DictReader(io.StringIO(client.files.content(job.result_files[0]).text)))
    assert rows and float(rows[-1]["train_loss"]) > 0 and int(rows[-1]["step"]) == 6  # 12 examples / 4 x 2 epochs

    # The status is written first (conditioned on no pending cancel), then the model record and the last events:
    # a poll can see "succeeded" a moment before "The job has successfully completed".
    wait_for(lambda: client.fine_tuning.jobs.list_events(job.id, limit=1).data[0].message ==
             "The job has successfully completed", timeout=30, what="the job's last event")
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=3))  # the SDK follows after/has_more
    assert len({e.id for e in events}) == len(events) > 6
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
    assert events[0].message == "The job has successfully completed"
    assert any(e.type == "metrics" and "training loss" in e.message for e in events)
    first_page = client.fine_tuning.jobs.list_events(job.id, limit=len(events))
    assert first_page.has_more is False and len(first_page.data) == len(events)

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [6, 3]  # one per epoch, newest first
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-6"

    models = [m.id for m in client.models.list()]
    assert "tiny-llama" in models and "smollm2-135m" in models and job.fine_tuned_model in models
    assert client.models.delete(job.fine_tuned_model).deleted
    assert job.fine_tuned_model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(job.fine_tuned_model)


def test_list_pagination_is_exact(client, training_file):
    for _ in range(2):  # queued jobs that are cancelled at once
        job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id, method=supervised())
        client.fine_tuning.jobs.pause(job.id)
        client.fine_tuning.jobs.cancel(job.id)  # a worker may have claimed it first: then its worker stops it
        assert final(client, job.id).status == "cancelled"
    every = client.fine_tuning.jobs.list(limit=100)
    assert every.has_more is False
    page = client.fine_tuning.jobs.list(limit=len(every.data) - 1)
    assert page.has_more is True and [j.id for j in page.data] == [j.id for j in every.data[:-1]]
    last = client.fine_tuning.jobs.list(limit=5, after=page.data[-1].id)
    assert [j.id for j in last.data] == [every.data[-1].id] and last.has_more is False


def test_pause_resume_and_cancel(server, client, training_file):
    long = supervised(n_epochs=40, batch_size=4)
    job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id, method=long,
                                         extra_body={"tuneforge": {"train": {"save_steps": 10, "precision": "fp32"}}})
    wait_for(lambda: (client.fine_tuning.jobs.retrieve(job.id).progress or {}).get("step"), what="a first step")
    client.fine_tuning.jobs.pause(job.id)  # mid-run: the job checkpoints the step it is at, then stops
    try:
        client.fine_tuning.jobs.pause(job.id)  # twice: one request, one event
    except openai.ConflictError:
        pass  # paused already
    paused = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status == "paused" and j,
                      what="the pause")
    step_at_pause = client.fine_tuning.jobs.checkpoints.list(job.id).data[0].step_number
    steps = httpx.get(f"{server.url}/api/v1/fine-tuning/jobs/{job.id}/metrics",
                      headers={"Authorization": f"Bearer {server.keys['acme']}"}).json()["data"]
    assert max(s["step"] for s in steps) == step_at_pause  # the pause checkpointed the step it stopped at
    assert paused.fine_tuned_model is None
    assert client.fine_tuning.jobs.resume(job.id).status in ("queued", "running")
    done = final(client, job.id)
    assert done.status == "succeeded", done.error
    summary = json.loads((server.settings.run_dir(job.id) / "summary.json").read_text())
    assert summary["resumed_from"] == f"checkpoint-{step_at_pause}" and summary["global_step"] == 120
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
    assert any("paused" in m for m in messages) and any(f"resuming from checkpoint-{step_at_pause}" in m for m in messages)
    assert sum(m.startswith("Pausing") for m in messages) == 1

    job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id, method=long,
                                         extra_body={"tuneforge": {"train": {"save_steps": 10, "precision": "fp32"}}})
    wait_for(lambda: client.fine_tuning.jobs.checkpoints.list(job.id).data, what="a checkpoint")
    client.fine_tuning.jobs.cancel(job.id)
    cancelled = final(client, job.id)
    assert cancelled.status == "cancelled" and cancelled.fine_tuned_model is None
    assert list((server.settings.run_dir(job.id) / "checkpoints").glob("checkpoint-*"))  # what was written stays
    with pytest.raises(openai.APIStatusError) as caught:
        client.fine_tuning.jobs.resume(job.id)
    assert caught.value.status_code == 409


@pytest.mark.parametrize("rows, code, words", [
    (CHAT[:5], "invalid_n_examples", "has 5 example(s)"),
    (CHAT[:11] + [{"messages": [{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}]}],
     "unrecognized_role", "Example 12, message 2"),
    ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}] + CHAT, "missing_content", "Example 1"),
    (CHAT + [{"messages": [{"role": "user", "content": "no answer"}]}], "example_missing_assistant_message", "Example 13"),
])
def test_a_bad_training_file_fails_the_job_with_openai_codes(client, tmp_path, rows, code, words):
    with write_chat(tmp_path / "bad.jsonl", rows).open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id)
    assert job.status == "failed" and job.error.code == code and words in job.error.message
    assert job.error.param == "training_file"


def test_refusals_use_the_error_envelope(server, client, training_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(CHAT[0]) + "\n{not json\n")
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=bad.open("rb"), purpose="fine-tune")
    assert caught.value.code == "invalid_training_file" and "Line 2" in caught.value.message
    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps(CHAT[0]) * 5000)  # ~0.5 MB > the 100 kB limit
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=big.open("rb"), purpose="fine-tune")
    assert caught.value.status_code == 413 and caught.value.body["code"] == "file_too_large"

    def chunked():  # no Content-Length: the server must count while it streams, and stop at the limit
        yield b'--xyz\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
        for _ in range(30):
            yield (json.dumps(CHAT[0]) + "\n").encode() * 64
        yield b"\r\n--xyz--\r\n"

    refused = httpx.post(server.url + "/v1/files", content=chunked(), headers={
        "Authorization": f"Bearer {server.keys['acme']}", "Content-Type": "multipart/form-data; boundary=xyz"})
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "file_too_large"
    staged = list((server.settings.artifacts_dir).glob(".upload-*"))
    assert staged == []  # nothing half-written is left behind
    assert not any(f.filename == "big.jsonl" for f in client.files.list())

    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.create(model="gpt-9", training_file=training_file.id)
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id,
                                       extra_body={"tuneforge": {"method": {"name": "lora", "rank": 8}}})
    assert "rank" in caught.value.message

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="tf-wrong", max_retries=0).models.list()
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    other = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["other"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(training_file.id)
    job_id = client.fine_tuning.jobs.create(model="tiny-llama", training_file=training_file.id,
                                            extra_body={"priority": -1}).id
    client.fine_tuning.jobs.cancel(job_id)
    with pytest.raises(openai.NotFoundError):
        other.fine_tuning.jobs.retrieve(job_id)
    assert other.fine_tuning.jobs.list().data == []

    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.keys['acme']}"}).text
    assert "tuneforge_queue_depth" in metrics and 'tuneforge_job_outcomes_total{status="succeeded"}' in metrics
    assert "tuneforge_job_duration_seconds_bucket" in metrics
    assert httpx.get(server.url + "/metrics").status_code == 401


def test_native_api_datasets_configs_jobs_checkpoints(server, client, training_file):
    api = httpx.Client(base_url=server.url + "/api/v1/fine-tuning",
                       headers={"Authorization": f"Bearer {server.keys['acme']}"}, timeout=30)
    dataset = api.post("/datasets", json={"name": "adder", "file_id": training_file.id}).json()
    assert dataset["format"] == "messages" and dataset["examples"] == len(CHAT)
    assert api.post(f"/datasets/{dataset['id']}/validate").json()["examples"] == len(CHAT)
    assert [d["id"] for d in api.get("/datasets").json()["data"]] == [dataset["id"]]
    refused = api.post("/configs/validate", json={"model": "tiny-llama", "data": {"train": "x"}, "trian": {}})
    assert refused.status_code == 400 and refused.json()["error"]["hint"] == "did you mean 'train'?"
    assert api.post("/configs/validate", json={"model": "m", "data": {"train": "x"}}).json()["config"]["seed"] == 42
    assert "lora" in [t["name"] for t in api.get("/configs/templates").json()["data"]]
    assert api.post("/models/validate", json={"model": "tiny-llama"}).json()["valid"] is True
    assert api.post("/models/validate", json={"model": "nope"}).status_code == 404

    config = {"model": "tiny-llama", "data": {"train": dataset["id"]},
              "train": {"max_steps": 3, "batch_size": 4, "precision": "fp32", "save_steps": 1, "logging_steps": 1,
                        "save_total_limit": None}}
    job = api.post("/jobs", params={"priority": 5, "suffix": "native"}, json=config).json()
    assert job["status"] == "queued" and job["priority"] == 5 and job["config"]["method"]["name"] == "lora"
    wait_for(lambda: api.get(f"/jobs/{job['id']}/progress").json()["status"] == "succeeded", what="the native job")
    assert [m["step"] for m in api.get(f"/jobs/{job['id']}/metrics").json()["data"]] == [1, 2, 3]
    assert any("successfully completed" in line for line in api.get(f"/jobs/{job['id']}/logs").json()["lines"])
    checkpoints = api.get(f"/jobs/{job['id']}/checkpoints").json()["data"]
    assert [c["step"] for c in checkpoints] == [3, 2, 1]
    first = api.get(f"/checkpoints/{checkpoints[-1]['id']}").json()
    restored = api.post(f"/checkpoints/{first['id']}/restore").json()
    wait_for(lambda: api.get(f"/jobs/{restored['id']}").json()["status"] == "succeeded", what="the restored job")
    summary = json.loads((server.settings.run_dir(restored["id"]) / "summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-1" and summary["global_step"] == 3

    finished = api.get(f"/jobs/{job['id']}").json()
    assert finished["kind"] == "train" and finished["result"]["global_step"] == 3
    assert finished["result"]["trained_tokens"] == finished["trained_tokens"] > 0
    assert finished["fine_tuned_model"] in [m["id"] for m in api.get("/models").json()["data"]]
    assert api.delete(f"/jobs/{job['id']}").status_code == 409  # its model is still registered
    client.models.delete(finished["fine_tuned_model"])
    assert api.delete(f"/jobs/{job['id']}").json()["deleted"] is True
    assert api.get(f"/jobs/{job['id']}").status_code == 404
    assert httpx.get(server.url + "/docs").status_code == 200
    assert "/api/v1/fine-tuning/jobs/{job_id}/cancel" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_a_dpo_job_trains_preference_pairs(client, tmp_path):
    pairs = [{"input": {"messages": [{"role": "user", "content": f"What is {a} plus {b}?"}]},
              "preferred_output": [{"role": "assistant", "content": str(a + b)}],
              "non_preferred_output": [{"role": "assistant", "content": str(a + b + 1)}]}
             for a, b in [(1, 2), (3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (5, 3), (8, 1), (2, 2), (9, 0)]]
    uploaded = client.files.create(file=write_chat(tmp_path / "pairs.jsonl", pairs).open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=uploaded.id, extra_body={"tuneforge": {"train": FP32}},
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 5, "beta": "auto"}}})
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    done = final(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.tuneforge["task"] == {"name": "dpo", "beta": 0.1, "loss_type": "sigmoid"}
    # A chat file is not a preference file: the job fails validation with OpenAI's code.
    chat = client.files.create(file=write_chat(tmp_path / "chat.jsonl").open("rb"), purpose="fine-tune")
    failed = client.fine_tuning.jobs.create(model="tiny-llama", training_file=chat.id, method={"type": "dpo"})
    assert failed.status == "failed" and failed.error.code == "invalid_training_file"
