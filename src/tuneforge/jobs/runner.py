"""One job in its own process: train through ``run_training`` and write the outcome to the store.

The worker starts :func:`main` in a process forked from a warm forkserver (torch and transformers
already imported). Pause arrives as SIGUSR1: the job saves a checkpoint at the end of the current step
and stops; cancel is SIGTERM / SIGKILL from the worker. If the worker dies, the job process ends too
(a watchdog thread), so a requeued job never runs twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, DataError, NotFoundError, TuneforgeError
from tuneforge.jobs.recorder import JobRecorder
from tuneforge.jobs.settings import PlatformSettings
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.records import (
    PAUSED, RUNNING, SUCCEEDED, FAILED, FileRecord, JobRecord, ModelRecord, new_id, now,
)
from tuneforge.storage.sql import SqlStore
from tuneforge.training.rundir import RunDir


class JobPaused(Exception):
    """Raised inside the Trainer after the pause checkpoint is written."""


PAUSE = threading.Event()


def on_pause_signal(*_: Any) -> None:
    """SIGUSR1 handler: pause at the end of the current step. Installed in the forkserver, so that a job
    process has it from its first instruction (SIGUSR1's default action would kill it)."""
    PAUSE.set()


def main(job_id: str, settings_json: str, worker_id: str, worker_pid: int) -> None:
    """Entry point of a job process. Never raises: every outcome is written to the store."""
    settings = PlatformSettings.model_validate_json(settings_json)
    os.environ["TUNEFORGE_HOME"] = settings.home
    _watch_worker(worker_pid)
    signal.signal(signal.SIGUSR1, on_pause_signal)
    import torch

    torch.set_num_threads(settings.job_threads())
    store = SqlStore(settings.database_url, migrate_schema=False)
    try:
        job = store.get_job(job_id)
        if job.status != RUNNING or job.worker_id != worker_id:
            return  # taken over by another worker while this process was starting: never run twice
        run_job(store, job, settings=settings, worker_id=worker_id, pause=PAUSE)
    finally:
        store.close()


def _watch_worker(pid: int) -> None:
    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)  # the worker died: stop now, the job will be requeued and resumed elsewhere

    threading.Thread(target=watch, daemon=True, name="worker-watchdog").start()


def run_job(store: SqlStore, job: JobRecord, *, settings: PlatformSettings, worker_id: str,
            pause: threading.Event) -> None:
    """Train ``job`` (resuming from its newest checkpoint) and record success, failure or pause."""
    from tuneforge.config import TrainConfig
    from tuneforge.training.run import run_training

    run_dir = settings.run_dir(job.id)
    recorder = JobRecorder(store, job.id, run_dir)
    config = TrainConfig.model_validate({**job.config, "output_dir": str(run_dir)})
    checkpoint = RunDir(run_dir).latest_checkpoint()
    recorder.message(f"Fine-tuning job started (attempt {job.attempts})" +
                     (f", resuming from {checkpoint.name}" if checkpoint else ""),
                     data={"attempt": job.attempts, "pid": os.getpid(), "worker": worker_id})
    try:
        if (RunDir(run_dir).read_marker() or {}).get("status") == "completed":
            summary = json.loads(RunDir(run_dir).summary.read_text())  # trained before a crash: just record it
        else:
            summary = run_training(config, resume=True, progress=recorder,
                                   extra_callbacks=[pause_callback(pause)]).summary
    except JobPaused:
        recorder.scan_checkpoints()
        if store.transition(job.id, from_states=(RUNNING,), held_by=worker_id, status=PAUSED, control=None):
            recorder.message("Fine-tuning job paused after a checkpoint; resume continues from it")
        return
    except Exception as exc:  # noqa: BLE001 - every failure becomes the job's error
        error = job_error(exc)
        if not isinstance(exc, TuneforgeError):
            recorder.message(traceback.format_exc(limit=8), level="error")
        if store.transition(job.id, from_states=(RUNNING,), held_by=worker_id, status=FAILED, error=error,
                            finished_at=now(), control=None):
            recorder.message(f"Fine-tuning job failed: {error['message']}", level="error")
        return
    recorder.scan_checkpoints()
    finish(store, job, settings=settings, worker_id=worker_id, summary=summary, recorder=recorder)


def pause_callback(pause: threading.Event) -> Any:
    """A TrainerCallback: when ``pause`` is set, save a checkpoint at the end of the step, then stop."""
    from transformers import TrainerCallback

    class PauseControl(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if pause.is_set():
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if pause.is_set():
                raise JobPaused()
            return control

    return PauseControl()


def finish(store: SqlStore, job: JobRecord, *, settings: PlatformSettings, worker_id: str, summary: dict[str, Any],
           recorder: JobRecorder) -> None:
    """Register the fine-tuned model and the metrics CSV, then mark the job succeeded."""
    run = RunDir(settings.run_dir(job.id))
    model_path = run.adapter if run.adapter.is_dir() else run.model
    name = job.request.get("fine_tuned_model_name") or f"ft:{job.model}:{job.project}::{job.id}"
    table = metrics_csv(run.metrics).encode()
    digest, _ = Artifacts(settings.artifacts_dir).put_bytes(table)
    result = FileRecord(id=new_id("file"), project=job.project, filename="step_metrics.csv",
                        purpose="fine-tune-results", bytes=len(table), sha256=digest)
    store.add_file(result)
    done = store.transition(
        job.id, from_states=(RUNNING,), held_by=worker_id, status=SUCCEEDED, finished_at=now(), control=None,
        fine_tuned_model=name, trained_tokens=int(summary.get("trained_tokens") or 0), result_files=[result.id],
        progress={"step": summary.get("global_step"), "total_steps": summary.get("global_step"),
                  "train_loss": summary.get("final_loss"), "eta_seconds": 0, "updated_at": time.time()},
    )
    if done:
        store.add_model(ModelRecord(id=name, project=job.project, job_id=job.id, base_model=job.model,
                                    path=str(model_path)))
        recorder.message(f"New fine-tuned model created: {name}")
        recorder.message("The job has successfully completed")


def metrics_csv(metrics_file: Path) -> str:
    """OpenAI's result file: one row per logged step (step, train_loss, valid_loss, learning_rate, ...)."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line] if metrics_file.is_file() else []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "epoch", "train_loss", "valid_loss", "learning_rate", "tokens_per_second"])
    for row in rows:
        writer.writerow([row.get("step"), row.get("epoch"), row.get("loss", ""), row.get("eval_loss", ""),
                         row.get("learning_rate", ""), row.get("tokens_per_second", "")])
    return out.getvalue()


def job_error(exc: BaseException) -> dict[str, Any]:
    """A job's ``error {code, message, param}`` for an exception (OpenAI's codes where they exist)."""
    code = getattr(exc, "code", None)
    if code:
        return {"code": code, "message": str(getattr(exc, "message", exc)), "param": getattr(exc, "param", None)}
    if isinstance(exc, DataError):
        return {"code": "invalid_training_file", "message": str(exc), "param": "training_file"}
    if isinstance(exc, ConfigError):
        return {"code": "invalid_config", "message": str(exc), "param": exc.field}
    if isinstance(exc, NotFoundError):
        return {"code": "model_not_found", "message": str(exc), "param": "model"}
    if isinstance(exc, TuneforgeError):
        return {"code": "training_error", "message": str(exc), "param": None}
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "param": None}
