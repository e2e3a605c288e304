"""No job runs twice: a worker frozen (SIGSTOP, as a VM pause) past --stale-after loses its job to another
worker, and once it resumes its job process writes nothing: one writer, one metric row per step."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import psutil

from fixtures.platform import start_worker, wait_for, write_chat
from tuneforge.api.openai.jobs import create_openai_job
from tuneforge.api.openai.protocol import OpenAIJobRequest
from tuneforge.services import files
from tuneforge.services.platform import open_platform
from tuneforge.settings import Settings


def tree(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def freeze_outside_a_write(processes: list[psutil.Process], database: Path) -> None:
    """SIGSTOP ``processes`` at a moment none of them holds the SQLite file's write lock. SQLite has one writer at a
    time: a process frozen inside a write transaction blocks every other writer until it resumes (PostgreSQL is the
    database for workers that may freeze while writing). When the lock is held, they run on and are frozen again."""
    for _ in range(200):
        for process in processes:
            process.send_signal(signal.SIGSTOP)
        wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in processes), timeout=5, every=0.01,
                 what="the processes to stop")
        probe = sqlite3.connect(database, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # the write lock, not waited for
            probe.rollback()
            return
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc), exc
        finally:
            probe.close()
        for process in processes:
            process.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError(f"the frozen processes held the write lock of {database} at each of 200 tries")


def long_job(platform, tmp_path, *, save_steps: int):
    """A 150-step fine-tuning job of the tiny model (50 epochs of 12 examples, batch 4)."""
    data = files.upload_path(platform, project="acme", path=write_chat(tmp_path / "train.jsonl"))
    request = OpenAIJobRequest(model="tiny-llama", training_file=data.id,
                               method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50, "batch_size": 4}}},
                               tuneforge={"train": {"save_steps": save_steps, "precision": "fp32"}})
    return create_openai_job(platform, project="acme", request=request)


def starts(store, job_id):
    return [e for e in store.list_events(job_id, limit=1000).data if e.message.startswith("Fine-tuning job started")]


def test_a_frozen_worker_resumed_after_a_takeover_writes_nothing(tiny_model, tmp_path):
    settings = Settings(home=str(tmp_path / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                        stale_after_seconds=2.0, threads_per_job=1, base_models={"tiny-llama": str(tiny_model)})
    platform = open_platform(settings)
    store = platform.store
    job = long_job(platform, tmp_path, save_steps=10)
    first = start_worker(settings, tmp_path / "worker1.log")
    second = None
    try:
        wait_for(lambda: store.list_checkpoints(job.id).data, timeout=60, what="a checkpoint on the first worker")
        frozen = tree(first.pid)  # the whole machine pauses: worker, forkserver and the job process
        old_pid = starts(store, job.id)[0].data["pid"]
        assert old_pid in [p.pid for p in frozen]
        freeze_outside_a_write(frozen, Path(settings.database_url.removeprefix("sqlite:///")))
        frozen_at = max(m.step for m in store.list_metrics(job.id))
        second = start_worker(settings, tmp_path / "worker2.log")
        wait_for(lambda: len(starts(store, job.id)) == 2, timeout=60, what="the second worker to take the job over")
        wait_for(lambda: max(m.step for m in store.list_metrics(job.id)) > frozen_at + 2, timeout=30,
                 what="the second attempt to train")
        assert store.get_job(job.id).status == "running"  # both processes are alive and the job is not done
        for process in frozen:
            process.send_signal(signal.SIGCONT)
        # The resumed job process finds its lease lost at its first write (or its watchdog does) and ends.
        wait_for(lambda: not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE,
                 timeout=10, what="the frozen job process to stop")
        done = wait_for(lambda: (j := store.get_job(job.id)).status in ("succeeded", "failed") and j, timeout=90,
                        what="the job to finish on the second worker")
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.send_signal(signal.SIGCONT)
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.worker_id == starts(store, job.id)[0].data["worker"] != \
        starts(store, job.id)[1].data["worker"]
    steps = [m.step for m in store.list_metrics(job.id)]  # in the order they were written
    assert steps == list(range(1, 151))  # one writer: every step once, in order
    run = settings.run_dir(job.id)
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(logged) == len(set(logged))  # the run folder has one row per logged step as well
    assert store.list_models(project="acme")[0].id == done.fine_tuned_model
    platform.close()


def test_a_stopping_worker_checkpoints_its_job_before_requeueing_it(tiny_model, tmp_path):
    settings = Settings(home=str(tmp_path / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                        threads_per_job=1, base_models={"tiny-llama": str(tiny_model)})
    platform = open_platform(settings)
    store = platform.store
    job = long_job(platform, tmp_path, save_steps=1000)  # no checkpoint of its own
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        wait_for(lambda: (store.get_job(job.id).progress or {}).get("step", 0) >= 3, timeout=60, what="a few steps")
        worker.send_signal(signal.SIGTERM)  # a deploy or a reboot: the worker stops, the job must keep its steps
        worker.wait(timeout=60)
    finally:
        worker.kill()
    stopped = store.get_job(job.id)
    checkpoints = store.list_checkpoints(job.id).data
    assert stopped.status == "queued" and stopped.worker_id is None
    assert checkpoints and checkpoints[0].step == max(m.step for m in store.list_metrics(job.id)) >= 3
    messages = [e.message for e in store.list_events(job.id, limit=1000).data]
    assert "Worker stopped: job requeued; it resumes from its newest checkpoint" in messages
    platform.close()
