"""The model registry through a real server on 127.0.0.1 with a real worker: fine-tuning jobs register versions,
aliases move and roll back, an evaluation job's scores land on the version it evaluated, a compression job
registers its output linked to its input, lineage reaches the dataset's sha256, prune keeps the aliased one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx2 as httpx
import pytest

from fixtures.platform import running_server, wait_for, write_chat
from tuneforge.settings import Settings

TRAIN = {"max_steps": 2, "batch_size": 4, "precision": "fp32", "logging_steps": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    home = tmp_path_factory.mktemp("registry")
    settings = Settings(home=str(home), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3, threads_per_job=1,
                        base_models={"tiny-llama": str(tiny_model)})
    with running_server(settings) as running:
        yield running


def client(server, project="acme") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.keys[project]}"}, timeout=60)


def finished(api, path: str) -> dict:
    return wait_for(lambda: (j := api.get(path).json())["status"] in ("succeeded", "failed", "cancelled") and j,
                    timeout=180, what=path)


def registered(api, job_id: str, kind: str) -> None:
    """Wait for a job's registry step: it runs right after the job is marked succeeded."""
    logs = f"/api/v1/{kind}/jobs/{job_id}/logs" if kind == "fine-tuning" else f"/api/v1/{kind}/{job_id}/logs"
    wait_for(lambda: any("successfully completed" in line for line in api.get(logs).json()["lines"]), what=logs)


def test_jobs_register_versions_aliases_roll_back_and_prune_keeps_the_aliased(server, tmp_path):
    api = client(server)
    data = write_chat(tmp_path / "train.jsonl")
    with data.open("rb") as handle:
        file_id = api.post("/v1/files", files={"file": ("train.jsonl", handle)}, data={"purpose": "fine-tune"}).json()["id"]
    jobs = []
    for seed in (1, 2):
        config = {"model": "tiny-llama", "data": {"train": file_id}, "seed": seed, "train": TRAIN}
        job = api.post("/api/v1/fine-tuning/jobs", params={"suffix": "adder"}, json=config).json()
        jobs.append(finished(api, f"/api/v1/fine-tuning/jobs/{job['id']}"))
        registered(api, job["id"], "fine-tuning")
    assert [j["status"] for j in jobs] == ["succeeded", "succeeded"], [j["error"] for j in jobs]

    reg = "/api/v1/registry/models"
    model = api.get(f"{reg}/adder").json()
    v1, v2 = model["versions"]
    assert (v1["version"], v2["version"], v1["kind"], v1["job_id"]) == (1, 2, "adapter", jobs[0]["id"])
    assert v1["fine_tuned_model"] == jobs[0]["fine_tuned_model"] and v1["artifact_sha256"] != v2["artifact_sha256"]
    assert v1["artifact_path"].startswith("$TUNEFORGE_HOME/artifacts/") and v1["size_bytes"] > 0  # no server path

    def on_disk(path: str) -> Path:
        return Path(path.replace("$TUNEFORGE_HOME", str(server.settings.home), 1))

    assert (on_disk(v1["artifact_path"]) / "adapter_config.json").is_file()
    assert [m["name"] for m in api.get(reg).json()["data"]] == ["adder"]

    # Deploy 1, then 2; roll back to 1. Every move is recorded with who did it.
    assert api.put(f"{reg}/adder/aliases/production", json={"version": 1}).json()["to_version"] == 1
    assert api.put(f"{reg}/adder/aliases/production", json={"version": 2}).json()["from_version"] == 1
    back = api.post(f"{reg}/adder/aliases/production/rollback").json()
    assert (back["from_version"], back["to_version"], back["action"]) == (2, 1, "rollback")
    moves = api.get(f"{reg}/adder").json()["alias_moves"]
    assert [(m["from_version"], m["to_version"]) for m in moves] == [(None, 1), (1, 2), (2, 1)]
    assert moves[0]["actor"] == "key:" + server.keys["acme"][:8]
    assert api.get(f"{reg}/adder@production").json()["version"] == 1

    # An evaluation job on adder@production scores version 1; a compression job registers adder:3 from it.
    suite = {"tasks": [{"data": file_id, "metrics": ["exact_match"], "max_new_tokens": 4, "limit": 4}],
             "latency_samples": 0}
    evaluation = api.post("/api/v1/evaluations", json={"model": "adder@production", "suite": suite}).json()
    recipe = {"steps": [{"name": "prune", "method": "magnitude", "sparsity": 0.5}], "latency_samples": 1,
              "latency_tokens": 2}
    compression = api.post("/api/v1/compressions", json={"model": "adder@production", "recipe": recipe}).json()
    assert finished(api, f"/api/v1/evaluations/{evaluation['id']}")["status"] == "succeeded"
    assert finished(api, f"/api/v1/compressions/{compression['id']}")["status"] == "succeeded"
    registered(api, evaluation["id"], "evaluations")
    registered(api, compression["id"], "compressions")
    scored = api.get(f"{reg}/adder:1").json()["scores"]
    task = next(k for k in scored if k != "training")
    assert scored[task]["examples"] == 4 and scored[task]["job_id"] == evaluation["id"]
    v3 = api.get(f"{reg}/adder:3").json()
    assert (v3["kind"], v3["parent_version"], v3["job_id"]) == ("full", 1, compression["id"])

    lineage = api.get(f"{reg}/adder:3/lineage").json()
    assert [c["version"] for c in lineage["chain"]] == ["adder:3", "adder:1"]
    assert lineage["job"]["id"] == jobs[0]["id"] and lineage["base_model_name"] == "tiny-llama"
    assert lineage["dataset_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert lineage["config"]["train"]["max_steps"] == 2 and lineage["config"]["seed"] == 1
    trained = api.get(f"/api/v1/registry/datasets/{lineage['dataset_sha256']}/versions").json()["data"]
    assert [v["version"] for v in trained] == [1, 2, 3]

    # Retention: keep none but the aliased; version 2's bytes go, its row stays.
    pruned = api.post(f"{reg}/adder/prune", json={"keep": 0}).json()
    assert pruned["pruned"] == [3, 2] and pruned["kept"] == [1] and pruned["bytes_freed"] > v2["size_bytes"] // 2
    assert not on_disk(v2["artifact_path"]).exists() and on_disk(v1["artifact_path"]).is_dir()
    assert api.get(f"{reg}/adder:2").json()["status"] == "pruned"
    gone = api.post("/api/v1/evaluations", json={"model": "adder:2", "suite": suite})
    assert gone.status_code == 404 and "pruned" in gone.json()["error"]["message"]
    # The same bytes registered again (from the job's run folder) are stored again, once.
    copy = api.post(f"{reg}/adder-copy/versions", json={"job_id": jobs[1]["id"]}).json()
    assert (copy["ref"], copy["artifact_sha256"], copy["artifact_path"]) == \
        ("adder-copy:1", v2["artifact_sha256"], v2["artifact_path"]) and on_disk(copy["artifact_path"]).is_dir()
    assert api.post(f"{reg}/x/versions", json={"path": "/etc"}).status_code == 400  # no allow_local_paths
    typo = api.get(f"{reg}/addr")
    assert typo.status_code == 404 and "did you mean 'adder'" in typo.json()["error"]["hint"]
    assert client(server, "other").get(f"{reg}/adder").status_code == 404  # another project's model
