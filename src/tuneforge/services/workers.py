"""Workers of the platform: the job runner of ``jobs`` with the kinds this platform registers."""

from __future__ import annotations

import threading

from tuneforge.jobs.worker import Worker
from tuneforge.services.job_kinds import KINDS, PRELOAD
from tuneforge.settings import Settings


def make_worker(settings: Settings, *, name: str = "worker", gpus: list[str] | None = None) -> Worker:
    """A worker that runs every registered job kind, its job processes forked from a warm forkserver; ``gpus``:
    the GPU indices it hands out (a train job with ``nproc`` N gets N of them and runs under the launcher)."""
    return Worker(settings, kinds=KINDS, preload=PRELOAD, name=name, gpus=gpus)


def start_workers(settings: Settings, *, count: int) -> list[tuple[Worker, threading.Thread]]:
    """Start ``count`` workers in daemon threads (the server's embedded pool); their jobs run in processes."""
    workers = [make_worker(settings, name=f"server{i}") for i in range(count)]
    return [(worker, worker.start_thread()) for worker in workers]
