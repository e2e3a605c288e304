"""Studies on the platform: a real server and worker run ``hpo_trial`` jobs; pause, resume, cancel; bad bodies."""

from __future__ import annotations

import pytest

from fixtures.data import MEMORIZE, write_jsonl
from fixtures.platform import api_client, running_server, start_worker, study_request as body, tiny_server_settings
from fixtures.platform import study_files, wait_for
from tuneforge.settings import Settings

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model):
    settings = tiny_server_settings(tmp_path_factory.mktemp("hpo-platform"), tiny_model, concurrency=2,
                                    heartbeat_seconds=1)
    with running_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    return api_client(server)


@pytest.fixture(scope="module")
def files(api, tmp_path_factory):
    return study_files(api, tmp_path_factory.mktemp("hpo-data"))


def test_a_study_runs_as_trial_jobs_and_can_pause_resume_and_cancel(api, files):
    created = api.post("/api/v1/hpo/studies", json=body("plat", files))
    assert created.status_code == 200, created.text
    assert created.json()["state"] == "running"
    paused = api.post("/api/v1/hpo/studies/plat/pause").json()
    assert paused["state"] == "paused"
    jobs = api.get("/api/v1/hpo/trials").json()["data"]
    assert len(jobs) == 3 and {j["kind"] for j in jobs} == {"hpo_trial"}
    assert api.post("/api/v1/hpo/studies/plat/pause").status_code == 409  # already paused
    assert api.post("/api/v1/hpo/studies/plat/resume").json()["state"] == "running"
    done = wait_for(lambda: (s := api.get("/api/v1/hpo/studies/plat").json())["complete"] == 3 and s,
                    timeout=240, what="three complete trials")
    assert done["best"] and len(done["trials"]) == 3
    job_ids = {t["job_id"] for t in done["trials"]}
    assert None not in job_ids and len(job_ids) == 3  # one job per trial, none ran two
    trial_job = api.get(f"/api/v1/hpo/trials/{next(iter(job_ids))}").json()
    assert trial_job["status"] == "succeeded" and trial_job["result"]["state"] == "complete"
    assert [s["name"] for s in api.get("/api/v1/hpo/studies").json()["data"]] == ["plat"]
    assert all(t["duration"] > 0 and t["intermediate"] == [] for t in done["trials"])  # pruner none: no reports
    importances = api.get("/api/v1/hpo/studies/plat/importances").json()  # fANOVA over the complete trials
    assert importances["complete"] == 3 and importances["objectives"][0]["metric"] == "eval_loss"
    assert importances["objectives"][0]["importances"] == {"train.learning_rate": pytest.approx(1.0)}

    api.post("/api/v1/hpo/studies", json=body("stopped", files, n_trials=2)).raise_for_status()
    cancelled = api.post("/api/v1/hpo/studies/stopped/cancel").json()
    assert cancelled["state"] == "cancelled"
    def stopped_jobs() -> list[dict]:
        return [j for j in api.get("/api/v1/hpo/trials").json()["data"] if j["request"].get("study") == "stopped"]

    # A job claimed just before the cancel may see the cancelled study and end without a trial: its cancel was
    # pending before its final write, so it ends cancelled too (with its result kept), never succeeded.
    wait_for(lambda: all(j["status"] in ("succeeded", "failed", "cancelled") for j in stopped_jobs()), timeout=60,
             what="the stopped study's trial jobs to end")
    assert [j["status"] for j in stopped_jobs()] == ["cancelled", "cancelled"], stopped_jobs()
    assert api.post("/api/v1/hpo/studies/stopped/resume").status_code == 409  # a cancelled study stays cancelled


def test_bad_studies_are_refused_before_anything_is_queued(api, files, server):
    typo = body("typo", files, space={"train.learning_rte": {"type": "float", "low": 1e-4, "high": 1e-2}})
    response = api.post("/api/v1/hpo/studies", json=typo)
    assert response.status_code in (400, 422) and "learning_rate" in response.text
    unknown = body("typo", files)
    unknown["search"]["base"]["data"]["train"] = "file-nope"
    assert api.post("/api/v1/hpo/studies", json=unknown).status_code == 404
    other = api_client(server, project="other")
    assert other.get("/api/v1/hpo/studies/plat").status_code == 404  # another project's study
    assert other.get("/api/v1/hpo/studies/plat/importances").status_code == 404


@pytest.mark.postgres
def test_a_trial_of_a_killed_worker_is_failed_by_the_heartbeat_and_retried(postgres_url, tiny_model, tmp_path):
    """Two workers share PostgreSQL; the first dies mid-trial: the trial is failed and rerun, same values."""
    import signal

    import psutil

    from fixtures.postgres import reset_database
    from tuneforge.hpo.study import load_study
    from tuneforge.services import files
    from tuneforge.services.hpo import StudyRequest, create_platform_study
    from tuneforge.services.platform import open_platform

    reset_database(postgres_url)
    settings = Settings(home=str(tmp_path / "home"), database_url=postgres_url, concurrency=1, poll_seconds=0.2,
                        heartbeat_seconds=0.3, stale_after_seconds=3.0, threads_per_job=1,
                        base_models={"tiny-llama": str(tiny_model)})
    platform = open_platform(settings)
    ids = {split: files.upload_path(platform, project="acme", path=write_jsonl(tmp_path / f"{split}.jsonl", rows)).id
           for split, rows in (("train", MEMORIZE), ("eval", MEMORIZE[:4]))}

    def trials():
        return load_study(name, settings=settings).trials

    # The kill must land mid-trial. On a loaded machine the test may poll so late that the trial has ended first
    # (then there is nothing to retry): that try is set aside and another study started.
    for attempt in range(3):
        request = body("killed", ids, max_steps=60, n_trials=1)
        name = request["name"] = f"killed-{tmp_path.name[-8:]}-{attempt}"  # the optuna schema outlives reset_database
        create_platform_study(platform, project="acme", request=StudyRequest(**request))
        first = start_worker(settings, tmp_path / f"worker1-{attempt}.log")
        try:
            wait_for(lambda: trials() and trials()[0].user_attrs.get("steps") is not None, timeout=120,
                     what="the trial to evaluate on the first worker")
            children = psutil.Process(first.pid).children(recursive=True)  # its forkserver and the job process
            first.send_signal(signal.SIGKILL)
            first.wait()
        finally:
            first.kill()
        _, alive = psutil.wait_procs(children, timeout=30)  # the job process's watchdog sees its worker gone
        assert not alive, alive
        if trials()[0].state.name == "RUNNING":
            break
    else:
        raise AssertionError("the trial ended before the first worker was killed, three times")
    second = start_worker(settings, tmp_path / "worker2.log")
    try:
        wait_for(lambda: any(t.state.name == "COMPLETE" for t in trials()), timeout=180, what="the retried trial")
        job_id = trials()[-1].user_attrs["job_id"]
        wait_for(lambda: platform.store.get_job(job_id).status not in ("queued", "running"), timeout=60,
                 what=f"the trial job to end: {(tmp_path / 'worker2.log').read_text()[-3000:]}")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    killed, retry = trials()
    assert killed.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.system_attrs["failed_trial"] == killed.number and retry.params == killed.params
    job = platform.store.get_job(job_id)
    # The same job, requeued from the dead worker (once more if a loaded machine let a heartbeat go stale).
    assert job.status == "succeeded" and job.attempts >= 2
    platform.close()
