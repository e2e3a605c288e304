"""Workers on a shared PostgreSQL: a killed worker's job resumes elsewhere from its checkpoint, and a
queue of 120 jobs drains through a pool of workers with nothing run twice or lost."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from fixtures.platform import start_worker as start_platform_worker, wait_for, write_chat
from fixtures.postgres import reset_database
from tuneforge.config import TrainConfig
from tuneforge.settings import Settings
from tuneforge.api.openai.protocol import OpenAIJobRequest
from tuneforge.api.openai.jobs import create_openai_job
from tuneforge.services import files, jobs
from tuneforge.services.platform import open_platform

pytestmark = pytest.mark.postgres


@pytest.fixture
def platform(postgres_url, tiny_model, tmp_path):
    reset_database(postgres_url)
    settings = Settings(home=str(tmp_path / "home"), database_url=postgres_url, concurrency=1,
                                poll_seconds=0.2, heartbeat_seconds=0.3, stale_after_seconds=3.0, threads_per_job=1,
                                base_models={"tiny-llama": str(tiny_model)})
    p = open_platform(settings)
    yield p
    p.close()


def start_worker(platform, log: Path, *, concurrency: int = 1) -> subprocess.Popen:
    return start_platform_worker(platform.settings, log, concurrency=concurrency)


def test_a_killed_workers_job_resumes_from_its_checkpoint_on_another_worker(platform, tmp_path):
    store = platform.store
    data = files.upload_path(platform, project="acme", path=write_chat(tmp_path / "train.jsonl"))
    request = OpenAIJobRequest(model="tiny-llama", training_file=data.id,
                               method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 20, "batch_size": 4}}},
                               tuneforge={"train": {"save_steps": 10, "precision": "fp32"}})
    job = create_openai_job(platform, project="acme", request=request)
    first = start_worker(platform, tmp_path / "worker1.log")
    try:
        wait_for(lambda: store.list_checkpoints(job.id).data, timeout=90, what="a checkpoint on the first worker")
        started = [e for e in store.list_events(job.id, limit=1000).data if e.message.startswith("Fine-tuning job started")]
        job_pid = started[0].data["pid"]
        first.send_signal(signal.SIGKILL)  # the machine dies: no goodbye, no requeue by the worker itself
        first.wait()
    finally:
        first.kill()
    # The job's own process notices its worker is gone and stops: it will not run on alongside the next one.
    wait_for(lambda: not psutil.pid_exists(job_pid) or psutil.Process(job_pid).status() == psutil.STATUS_ZOMBIE,
             timeout=10, what="the orphaned job process to stop")
    lost_at = max(m.step for m in store.list_metrics(job.id))
    assert store.get_job(job.id).status == "running"  # until a live worker sees the heartbeat is stale

    second = start_worker(platform, tmp_path / "worker2.log")
    try:
        done = wait_for(lambda: (j := store.get_job(job.id)).status in ("succeeded", "failed") and j, timeout=120,
                        what="the job to finish on the second worker")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.worker_id != started[0].data["worker"]
    messages = [e.message for e in store.list_events(job.id, limit=1000).data]
    assert any("stopped answering" in m and "requeued" in m for m in messages)
    lost = [e for e in store.list_events(job.id, limit=1000).data if e.type == "alert"]
    assert [e.data["kind"] for e in lost] == ["worker_lost"] and store.count_alerts() == {"worker_lost": 1}
    resumed = [m for m in messages if "resuming from checkpoint-" in m]
    assert len(resumed) == 1
    resumed_step = int(resumed[0].rsplit("-", 1)[1])
    assert 10 <= resumed_step <= lost_at
    steps = [m.step for m in store.list_metrics(job.id)]
    assert set(steps) == set(range(1, 61))  # nothing lost: every step was trained, by one worker or the other
    summary = (platform.settings.run_dir(job.id) / "summary.json").read_text()
    assert f'"resumed_from": "checkpoint-{resumed_step}"' in summary


def test_120_jobs_drain_through_a_pool_of_workers(platform, tiny_model, tmp_path):
    from tuneforge.services.workers import make_worker

    store = platform.store
    data = files.upload_path(platform, project="acme", path=write_chat(tmp_path / "train.jsonl"))
    config = TrainConfig(model="tiny-llama", data={"train": data.id},
                         train={"max_steps": 1, "batch_size": 4, "precision": "fp32", "save_steps": 1})
    started = time.perf_counter()
    ids = [jobs.create_train_job(platform, project="acme", config=config, priority=i % 3).id for i in range(120)]
    workers = [make_worker(platform.settings.model_copy(update={"concurrency": 2}), name=f"pool{i}") for i in range(3)]
    threads = [w.start_thread() for w in workers]
    try:
        wait_for(lambda: store.count_jobs().get("succeeded", 0) + store.count_jobs().get("failed", 0) >= 120,
                 timeout=150, every=0.5, what="120 jobs to finish")
    finally:
        for w in workers:
            w.stop()
        for t in threads:
            t.join(timeout=30)
    wall = time.perf_counter() - started
    finished = [store.get_job(i) for i in ids]
    assert [j.status for j in finished] == ["succeeded"] * 120, {j.error["message"] for j in finished if j.error}
    assert all(j.attempts == 1 for j in finished)  # none ran twice
    starts = [e for j in ids for e in store.list_events(j, limit=100).data if e.message.startswith("Fine-tuning job started")]
    assert len(starts) == 120
    intervals = sorted((j.started_at, j.finished_at) for j in finished)
    peak = max(sum(1 for s, f in intervals if s <= start < f) for start, _ in intervals)
    assert 2 <= peak <= 6 and max(w.max_concurrent for w in workers) <= 2
    print(f"\n120 jobs: {wall:.1f} s wall, peak concurrency {peak} (3 workers x 2)")
