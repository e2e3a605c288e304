"""One job in its own process: run its kind and write the outcome to the store.

The worker starts :func:`main` in a process forked from a warm forkserver (the modules the kinds need
already imported). Pause arrives as SIGUSR1: a pausable kind saves what a resume continues from and
raises :class:`~tuneforge.jobs.kinds.JobPaused`; cancel is SIGTERM / SIGKILL from the worker. If the
worker dies, or the job's lease is lost (see ``jobs.lease``), the job process ends too (a watchdog thread;
every write is fenced by the lease as well), so a requeued job never runs twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Callable

from tuneforge.errors import LeaseLost, StorageError, TuneforgeError
from tuneforge.jobs.kinds import JobContext, JobKind, JobOutcome, JobPaused
from tuneforge.jobs.lease import LEASE_LOST_EXIT, LeasedStore, exit_lost
from tuneforge.jobs.recorder import JobRecorder
from tuneforge.settings import Settings
from tuneforge.storage.base import Store
from tuneforge.storage.records import JobRecord, JobStatus, JobUpdate, Lease, now
from tuneforge.storage.sql import SqlStore

PAUSE = threading.Event()
RUNNING = (JobStatus.RUNNING,)


def on_pause_signal(*_: object) -> None:
    """SIGUSR1 handler: pause at the next safe point. Installed in the forkserver too, so that a job
    process has it from its first instruction (SIGUSR1's default action would kill it)."""
    PAUSE.set()


def main(job_id: str, settings_json: str, worker_id: str, worker_pid: int, kind: JobKind, attempt: int,
         devices: tuple[str, ...] = ()) -> None:
    """Entry point of a job process for ``attempt`` of the job. Never raises: every outcome is written to
    the store, unless the lease was lost (then the process exits with :data:`LEASE_LOST_EXIT`, writing nothing).

    ``devices``: the GPUs the worker handed this job; they become its ``CUDA_VISIBLE_DEVICES`` (CUDA has not
    started in the forkserver, so this takes effect), inherited by any process the job starts.
    """
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    settings = Settings.model_validate_json(settings_json)
    signal.signal(signal.SIGUSR1, on_pause_signal)
    import torch

    torch.set_num_threads(settings.job_threads())
    store = SqlStore(settings.database_url, migrate_schema=False)
    lease = Lease(job_id, attempt)
    _watch(worker_pid, store=store, lease=lease, every=min(settings.heartbeat_seconds, 1.0))
    try:
        job = store.get_job(job_id)
        if job.status != JobStatus.RUNNING or job.attempts != attempt:
            return  # taken over by another worker while this process was starting: never run twice
        leased = LeasedStore(store, lease, on_lost=exit_lost)
        run_job(leased, job, kind=kind, settings=settings, worker_id=worker_id, pause=PAUSE,  # type: ignore[arg-type]
                devices=devices)
    finally:
        store.close()


def watch_parent(pid: int, *, every: float, check: Callable[[], None] | None = None, name: str = "watchdog") -> None:
    """Start a daemon thread that ends this process (exit code 3) once process ``pid``, its parent, is gone.

    Shared by job processes (parent: the worker) and local trial processes (parent: ``tuneforge tune``), so
    that a killed parent leaves no orphan training. ``check`` runs at every tick as well and may end the
    process itself (a job's lost lease).
    """
    def watch() -> None:
        while True:
            time.sleep(every)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)  # the parent died: stop now; the job is requeued (the trial retried) elsewhere
            if check is not None:
                check()

    threading.Thread(target=watch, daemon=True, name=name).start()


def _watch(pid: int, *, store: Store, lease: Lease, every: float) -> None:
    """End the process when its worker died or the job's lease was lost."""
    def hold_lease() -> None:
        try:
            store.hold_lease(lease)
        except LeaseLost:
            os._exit(LEASE_LOST_EXIT)  # requeued or taken over (this process was frozen): stop now
        except StorageError:
            pass  # the database is restarting: the fenced writes still guard

    watch_parent(pid, every=every, check=hold_lease, name="job-watchdog")


def run_job(store: Store, job: JobRecord, *, kind: JobKind, settings: Settings, worker_id: str,
            pause: threading.Event, devices: tuple[str, ...] = ()) -> None:
    """Run ``job`` with its kind and record success, failure or pause (through ``store``, which a job
    process fences with the job's lease: a lost lease raises LeaseLost, or ends the process)."""
    recorder = JobRecorder(store, job.id, settings.run_dir(job.id), title=kind.title, attempt=job.attempts)
    context = JobContext(job=job, store=store, settings=settings, recorder=recorder, pause=pause, worker_id=worker_id,
                         devices=devices)
    try:
        outcome = kind.run(context)
    except LeaseLost:
        raise
    except JobPaused:
        recorder.scan_checkpoints()
        # The event first: both writes are fenced, and once paused the job is no longer this attempt's.
        recorder.message(f"{kind.title} paused after a checkpoint; resume continues from it")
        store.update_job(job.id, JobUpdate(status=JobStatus.PAUSED, control=None), from_states=RUNNING,
                         held_by=worker_id)
        return
    except Exception as exc:  # noqa: BLE001 - every failure becomes the job's error
        error = kind.error_of(exc)
        if not isinstance(exc, TuneforgeError):
            recorder.message(traceback.format_exc(limit=8), level="error")
        recorder.message(f"{kind.title} failed: {error['message']}", level="error")
        update = JobUpdate(status=JobStatus.FAILED, error=error, finished_at=now(), control=None)
        store.update_job(job.id, update, from_states=RUNNING, held_by=worker_id)
        return
    recorder.scan_checkpoints()
    finish(context, kind=kind, outcome=outcome)


def finish(context: JobContext, *, kind: JobKind, outcome: JobOutcome) -> None:
    """Mark the job succeeded with what it produced, then let the kind act on it (register a model).

    A job whose cancel was requested before this final write ends ``cancelled`` instead: what it produced
    (result, files, progress) is kept, but the kind does not act on it (no model is registered or served).
    Each write is one leased transaction conditioned on the pending cancel, and a pending cancel is only
    cleared by a final status, so a cancel is never lost between the two.
    """
    fields = {"finished_at": now(), "control": None, "result": outcome.result, "result_files": outcome.result_files,
              "trained_tokens": outcome.trained_tokens,
              "progress": {**context.recorder.progress, **outcome.progress, "updated_at": time.time()}}
    store, job_id, worker = context.store, context.job.id, context.worker_id
    update = JobUpdate(status=JobStatus.SUCCEEDED, fine_tuned_model=outcome.fine_tuned_model, **fields)
    if store.update_job(job_id, update, from_states=RUNNING, held_by=worker, cancel_pending=False):
        kind.on_succeeded(context, outcome)
        context.recorder.message("The job has successfully completed")  # OpenAI's words
        return
    # A cancel is pending (or the job is no longer ours: then the fenced writes below end this process).
    # The event first: once cancelled, the job is no longer this attempt's to write to.
    context.recorder.message(f"{kind.title} cancelled as it finished; its results are kept")
    store.update_job(job_id, JobUpdate(status=JobStatus.CANCELLED, **fields), from_states=RUNNING, held_by=worker,
                     cancel_pending=True)
