"""Evaluation and compression as jobs: a real server on 127.0.0.1 with a real worker runs them in job
processes; their results equal the CLI's, their reports come back as JSON, and bad requests are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.data import MEMORIZE, write_jsonl

from fixtures.platform import api_client, finished, running_server, tiny_server_settings, upload_file
from tuneforge.settings import Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    with running_server(tiny_server_settings(tmp_path_factory.mktemp("kinds"), tiny_model)) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    return api_client(server)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("kinds-data") / "mem.jsonl", MEMORIZE)


@pytest.fixture(scope="module")
def file_id(api, data):
    return upload_file(api, data, purpose="evals")


SUITE = {"tasks": [{"metrics": ["exact_match", "token_f1"], "max_new_tokens": 6}], "latency_samples": 0}


def test_an_evaluation_job_scores_like_the_cli_and_keeps_its_report(api, server, file_id, data, tiny_model):
    suite = {**SUITE, "tasks": [{**SUITE["tasks"][0], "data": file_id}]}
    job = api.post("/api/v1/evaluations", json={"model": "tiny-llama", "suite": suite}).json()
    assert job["kind"] == "evaluate" and job["id"].startswith("evaljob-") and job["status"] in ("queued", "running")
    done = finished(api, f"/api/v1/evaluations/{job['id']}")
    assert done["status"] == "succeeded", done["error"]
    report = api.get(f"/api/v1/evaluations/{job['id']}/report").json()
    assert report["kind"] == "evaluation" and report["tasks"][0]["examples"] == len(MEMORIZE)
    scores = done["result"]["tasks"][report["tasks"][0]["name"]]
    assert scores["exact_match"] == report["tasks"][0]["metrics"]["exact_match"]

    # The same request through the CLI's service, in this process: the same answers and scores.
    from tuneforge.services.evaluation import evaluate

    local = evaluate(str(tiny_model), {**suite, "tasks": [{**suite["tasks"][0], "data": str(data)}]},
                     settings=server.settings, store=False)
    assert local.tasks[0].metrics == report["tasks"][0]["metrics"]
    assert [e.prediction for e in local.tasks[0].per_example] == [e["prediction"] for e in report["tasks"][0]["per_example"]]
    assert any("successfully completed" in line for line in api.get(f"/api/v1/evaluations/{job['id']}/logs").json()["lines"])
    assert [j["id"] for j in api.get("/api/v1/evaluations").json()["data"]] == [job["id"]]
    assert api.get("/v1/fine_tuning/jobs").json()["data"] == []  # a fine-tuning listing shows only training jobs
    assert api.get(f"/v1/fine_tuning/jobs/{job['id']}").status_code == 404


def test_a_compression_job_prunes_and_reports_before_and_after(api, server, file_id):
    recipe = {"steps": [{"name": "prune", "method": "magnitude", "sparsity": 0.5}], "latency_samples": 1,
              "latency_tokens": 4, "eval": {"tasks": [{"data": file_id, "metrics": ["exact_match"], "max_new_tokens": 6}]}}
    job = api.post("/api/v1/compressions", json={"model": "tiny-llama", "recipe": recipe}).json()
    assert job["kind"] == "compress" and job["id"].startswith("cmpjob-")
    done = finished(api, f"/api/v1/compressions/{job['id']}")
    assert done["status"] == "succeeded", done["error"]
    report = api.get(f"/api/v1/compressions/{job['id']}/report").json()
    before, after = report["stages"]
    assert after["parameters"] == before["parameters"] and after["nonzero_parameters"] < before["nonzero_parameters"]
    assert done["result"]["summary"] == report["summary"]
    assert report["output"].startswith("$TUNEFORGE_HOME/")  # the server's own paths stay on the server
    output = Path(report["output"].replace("$TUNEFORGE_HOME", str(server.settings.home_dir)))
    assert (output / "model").is_dir()
    assert api.get(f"/api/v1/evaluations/{job['id']}").status_code == 404  # another kind's id


def test_bad_requests_are_refused_before_anything_is_queued(api, data):
    local = {"tasks": [{"data": str(data)}]}
    refused = api.post("/api/v1/evaluations", json={"model": "tiny-llama", "suite": local})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "suite.tasks.0.data"
    unknown = api.post("/api/v1/evaluations", json={"model": "nope", "suite": {"tasks": [{"builtin": "profile-extraction"}]}})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    typo = api.post("/api/v1/compressions", json={"model": "tiny-llama", "recipe": {"steps": [{"name": "prun"}]}})
    assert typo.status_code == 400
    assert api.get("/api/v1/evaluations/evaljob-nope").status_code == 404
    huge = api.post("/api/v1/evaluations", json={"model": "tiny-llama", "priority": 10**30,
                                                  "suite": {"tasks": [{"builtin": "profile-extraction"}]}})
    assert huge.status_code == 400 and huge.json()["error"]["param"] == "priority"  # not a database error (500)
    for bad in ("../../etc/passwd", "file-" + "x" * 5000, "file-a%0Ab"):
        answer = api.get(f"/api/v1/evaluations/{bad}")
        assert answer.status_code == 404, (bad[:20], answer.status_code)


def test_cancel_a_queued_job_and_no_report_before_success(tmp_path, tiny_model):
    settings = Settings(home=str(tmp_path / "home"), concurrency=0, base_models={"tiny-llama": str(tiny_model)})
    with running_server(settings, workers=0) as quiet:  # API only: nothing runs the job
        api = api_client(quiet, timeout=30)
        body = {"model": "tiny-llama", "suite": {"tasks": [{"builtin": "profile-extraction", "limit": 2}]}}
        job = api.post("/api/v1/evaluations", json=body).json()
        assert job["status"] == "queued" and job["queue_position"] == 1
        assert api.get(f"/api/v1/evaluations/{job['id']}/report").status_code == 409
        cancelled = api.post(f"/api/v1/evaluations/{job['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert api.post(f"/api/v1/evaluations/{job['id']}/cancel").status_code == 409
        other = api_client(quiet, project="other").get(f"/api/v1/evaluations/{job['id']}")
        assert other.status_code == 404
