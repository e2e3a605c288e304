"""A worker: claims queued jobs, runs each in its own process, heartbeats, cancels, pauses, requeues.

Job processes are forked from a forkserver that imported the kinds' heavy modules once (the ``preload``
modules services name: torch, transformers, PEFT, TRL), so a job starts in well under a second while a
crash still ends only that job's process. Any number of
workers (in the server, or ``tuneforge worker`` on other machines sharing a PostgreSQL database) share
the queue; the store's claim and the job's lease (``jobs.lease``: every write of a job process is fenced by
the attempt number its claim wrote) guarantee that no job runs twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

from tuneforge.errors import LeaseLost
from tuneforge.jobs.kinds import JobKinds
from tuneforge.jobs.lease import LEASE_LOST_EXIT
from tuneforge.settings import Settings
from tuneforge.storage.records import EventRecord, JobControl, JobRecord, JobStatus, JobUpdate, Lease, new_id, now
from tuneforge.storage.sql import SqlStore

_context_lock = threading.Lock()
RUNNING = (JobStatus.RUNNING,)
SHUTDOWN_CHECKPOINT_SECONDS = 30.0  # how long a stopping worker waits for its jobs to checkpoint


def job_context(preload: list[str]) -> BaseContext:
    """The multiprocessing context job processes start from (a forkserver with ``preload`` imported).

    The forkserver is one per process: the first worker's ``preload`` is the one it keeps.
    """
    with _context_lock:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(preload)
        return context


@dataclass
class RunningJob:
    """A job process this worker started."""

    job_id: str
    process: BaseProcess
    started: float
    title: str = "Job"
    attempt: int = 0  # the fencing token of this run (the job's ``attempts`` after the claim)
    pausable: bool = False  # its kind can checkpoint on request (then a shutdown saves its progress)
    stopping: str | None = None  # 'cancel' once the worker asked it to end
    pausing: bool = False
    devices: tuple[str, ...] = ()  # the GPUs handed to it (worker --gpus)


class Worker:
    """Runs up to ``settings.concurrency`` jobs at once until :meth:`stop`.

    Args:
        settings: Database, home, concurrency, heartbeat and staleness settings.
        kinds: The job kinds this worker runs; it claims only jobs of these kinds.
        preload: Modules the job forkserver imports once (what the kinds need, warm).
        name: A label for the worker id (host and pid are added).
        gpus: GPU indices this worker hands out: each job gets as many as its kind asks
            (:meth:`~tuneforge.jobs.kinds.JobKind.devices_needed`, e.g. a train job's ``nproc``) as its
            ``CUDA_VISIBLE_DEVICES``, and waits while too few are free. Empty: jobs see every GPU.
    """

    def __init__(self, settings: Settings, *, kinds: JobKinds, preload: list[str] | None = None,
                 name: str = "worker", gpus: list[str] | None = None) -> None:
        self.settings, self.kinds, self.preload = settings, kinds, list(preload or [])
        self.gpus = list(gpus or [])
        self._waiting_for = 0  # GPUs the job put back for want of free ones needs: claim nothing until they are free
        self.id = f"{name}-{socket.gethostname()}-{os.getpid()}-{new_id('w')[2:10]}"
        self.store = SqlStore(settings.database_url)
        self.running: dict[str, RunningJob] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards ``running`` between the loop and the heartbeat thread
        self.max_concurrent = 0  # the most jobs this worker ran at once (for the queue benchmark)

    def run(self) -> None:
        """The loop: reap ended job processes and claim new jobs, until stopped. Heartbeats (and the
        requeue of dead workers' jobs) run in their own thread, so a slow process start never starves them."""
        context = job_context(self.preload)
        from multiprocessing import forkserver

        beat = threading.Thread(target=self._heartbeat_loop, name=f"{self.id}-heartbeat", daemon=True)
        beat.start()
        try:
            forkserver.ensure_running()  # warm up now (imports torch once), not when the first job arrives
            while not self._stop.is_set():
                try:
                    self._reap()
                    claimed = self._claim(context)
                except Exception:  # noqa: BLE001 - e.g. the database restarting: wait and try again
                    logging.getLogger("tuneforge.jobs").exception("worker loop failed; retrying")
                    claimed = False
                    self._stop.wait(5 * self.settings.poll_seconds)
                if not claimed:
                    self._stop.wait(self.settings.poll_seconds)
        finally:
            self._stop.set()
            beat.join()
            self._shutdown()

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                self._heartbeat()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the heartbeats
                logging.getLogger("tuneforge.jobs").exception("heartbeat failed; retrying")

    def stop(self) -> None:
        """Ask the loop to end; running jobs are stopped and requeued (they resume from a checkpoint)."""
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        """Run the loop in a daemon thread (the server's embedded pool)."""
        thread = threading.Thread(target=self.run, name=self.id, daemon=True)
        thread.start()
        return thread

    # --- the loop's steps ---------------------------------------------------------------------------
    def _free_gpus(self) -> list[str]:
        with self._lock:
            taken = {device for running in self.running.values() for device in running.devices}
        return [gpu for gpu in self.gpus if gpu not in taken]

    def _devices_for(self, job: JobRecord) -> tuple[str, ...] | None:
        """The GPUs to hand ``job`` (empty without ``gpus``); None when too few are free (the job goes back)."""
        if not self.gpus:
            return ()
        need, free = max(1, self.kinds.get(job.kind).devices_needed(job)), self._free_gpus()
        if need > len(self.gpus):
            error = {"code": "not_enough_gpus", "message": f"the job asks for {need} GPUs; worker {self.id} hands out "
                     f"{len(self.gpus)} ({','.join(self.gpus)})", "param": "nproc"}
            self.store.update_job(job.id, JobUpdate(status=JobStatus.FAILED, error=error, finished_at=now()),
                                  from_states=RUNNING, held_by=self.id)
            return None
        if need > len(free):
            self._waiting_for = need
            self.store.update_job(job.id, JobUpdate(status=JobStatus.QUEUED, worker_id=None), from_states=RUNNING,
                                  held_by=self.id)
            return None
        self._waiting_for = 0
        return tuple(free[:need])

    def _claim(self, context: BaseContext) -> bool:
        if len(self.running) >= self.settings.concurrency:
            return False
        if self.gpus and len(self._free_gpus()) < max(1, self._waiting_for):
            return False
        job = self.store.claim_job(worker_id=self.id, kinds=self.kinds.names(),
                                   max_running_per_project=self.settings.max_running_jobs_per_project)
        if job is None:
            return False
        devices = self._devices_for(job)
        if devices is None:
            return False
        from tuneforge.jobs import process as job_process

        process = context.Process(
            target=job_process.main,
            args=(job.id, self.settings.model_dump_json(), self.id, os.getpid(), self.kinds.get(job.kind),
                  job.attempts, devices),
            name=f"tuneforge-job-{job.id}", daemon=False,
        )
        with self._lock:
            kind = self.kinds.get(job.kind)
            self.running[job.id] = RunningJob(job.id, process, time.monotonic(), kind.title, attempt=job.attempts,
                                              pausable=kind.pausable, devices=devices)
            self.max_concurrent = max(self.max_concurrent, len(self.running))
        try:
            process.start()
        except BaseException:
            with self._lock:
                del self.running[job.id]
            self.store.update_job(job.id, JobUpdate(status=JobStatus.QUEUED, worker_id=None), from_states=RUNNING,
                                  held_by=self.id)
            raise
        return True

    def _reap(self) -> None:
        with self._lock:
            ended = [r for r in self.running.values() if r.process.pid is not None and not r.process.is_alive()]
            for running in ended:
                del self.running[running.job_id]
        for running in ended:
            running.process.join()
            self._settle(running)

    def _settle(self, running: RunningJob) -> None:
        """After a job process ended: record a cancel, or a crash the process could not record itself."""
        code = running.process.exitcode
        if running.stopping == "lost" or code == LEASE_LOST_EXIT:
            return  # another worker holds the job now: nothing of ours to record
        if running.stopping == "cancel":
            update = JobUpdate(status=JobStatus.CANCELLED, finished_at=now(), control=None)
            if self._update(running, update):
                self._event(running.job_id, f"{running.title} cancelled; checkpoints written so far are kept")
            return
        reason = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        error = {"code": "job_process_died", "message": f"the job's process ended without a result ({reason})",
                 "param": None}
        update = JobUpdate(status=JobStatus.FAILED, error=error, finished_at=now(), control=None)
        if self._update(running, update):
            self._event(running.job_id, f"{running.title} failed: {error['message']}", level="error")

    def _heartbeat(self) -> None:
        with self._lock:
            mine = dict(self.running)
        held = self.store.heartbeat(list(mine), worker_id=self.id)
        for job_id, running in mine.items():
            control = held.get(job_id)
            if job_id not in held and running.stopping is None:
                if self.store.get_job(job_id).status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    # Requeued or taken over by another worker (we were silent too long): ours must not run on.
                    running.stopping = "lost"
                    _signal(running.process, signal.SIGKILL)
            elif control is JobControl.CANCEL and running.stopping is None and _signal(running.process, signal.SIGTERM):
                running.stopping = "cancel"
                threading.Timer(10.0, _signal, args=(running.process, signal.SIGKILL)).start()
            elif control is JobControl.PAUSE and not running.pausing:
                running.pausing = _signal(running.process, signal.SIGUSR1)
        for job_id, status in self.store.requeue_stale(older_than=now() - self.settings.stale_after_seconds):
            message = {JobStatus.QUEUED: "Its worker stopped answering: job requeued; it resumes from its newest checkpoint"}
            text = message.get(status, f"Its worker stopped answering: job {status.value}")
            # An alert event (kind worker_lost, counted by /metrics' tuneforge_alerts_total): see monitoring/.
            self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=job_id, level="warn", type="alert",
                                             message=f"Alert (worker_lost): {text}", data={
                                                 "kind": "worker_lost", "value": None,
                                                 "threshold": self.settings.stale_after_seconds, "message": text}))

    def _shutdown(self) -> None:
        """Stop the running jobs and requeue them. A pausable job first checkpoints the step it is at (as a
        pause does, within ``SHUTDOWN_CHECKPOINT_SECONDS``), so that no trained step is lost."""
        saving = [r for r in self.running.values() if r.pausable and _signal(r.process, signal.SIGUSR1)]
        deadline = time.monotonic() + SHUTDOWN_CHECKPOINT_SECONDS
        for running in saving:
            running.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for running in self.running.values():
            if running.process.pid is not None:
                _signal(running.process, signal.SIGKILL)
        for running in self.running.values():
            running.process.join(timeout=10)
            update = JobUpdate(status=JobStatus.QUEUED, worker_id=None, control=None)
            # A job that checkpointed for the shutdown marked itself paused: it goes back to the queue too.
            checkpointed = running in saving and self.store.update_job(
                running.job_id, update, from_states=(JobStatus.PAUSED,), held_by=self.id)
            if checkpointed or self._update(running, update):
                self._event(running.job_id, "Worker stopped: job requeued; it resumes from its newest checkpoint",
                            level="warn")
        self.running.clear()
        self.store.close()

    def _update(self, running: RunningJob, update: JobUpdate) -> bool:
        """Change a job this worker ran, only while it is still this run's (same worker, same attempt)."""
        try:
            return self.store.update_job(running.job_id, update, from_states=RUNNING, held_by=self.id,
                                         lease=Lease(running.job_id, running.attempt))
        except LeaseLost:
            return False

    def _event(self, job_id: str, message: str, *, level: str = "info") -> None:
        self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=job_id, level=level, message=message))


def _signal(process: BaseProcess, signum: int) -> bool:
    """Send ``signum`` to a started, live job process; returns whether it was sent."""
    if process.pid is None or process.exitcode is not None:
        return False
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        return False
    return True
