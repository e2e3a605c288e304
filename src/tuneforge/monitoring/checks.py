"""Platform-level checks: a running job whose progress stopped moving, free disk under a threshold."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tuneforge.monitoring.detectors import DISK_LOW, JOB_STALLED, Alert
from tuneforge.storage.records import JobRecord

GB = 1e9


def last_progress(job: JobRecord) -> float | None:
    """When the job last moved: its progress' ``updated_at``, else its start."""
    return (job.progress or {}).get("updated_at") or job.started_at


def stalled_jobs(jobs: Iterable[JobRecord], *, now: float, after_seconds: float) -> list[tuple[JobRecord, Alert]]:
    """The running jobs whose progress has not moved for ``after_seconds``, each with its alert."""
    stalled = []
    for job in jobs:
        moved = last_progress(job)
        if moved is None or now - moved < after_seconds:
            continue
        idle = now - moved
        step = (job.progress or {}).get("step")
        stalled.append((job, Alert(JOB_STALLED, round(idle, 1), after_seconds,
                                   f"job {job.id} made no progress for {idle:.0f} s (step {step}); its worker "
                                   f"{job.worker_id} still heartbeats", step, {"since": moved})))
    return stalled


def free_disk_gb(path: Path) -> float:
    """Free space of the file system that holds ``path`` (its nearest existing parent), in GB."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / GB


def disk_alert(path: Path, *, min_free_gb: float) -> Alert | None:
    """A ``disk_low`` alert when ``path``'s file system has less than ``min_free_gb`` free."""
    free = free_disk_gb(path)
    if free >= min_free_gb:
        return None
    return Alert(DISK_LOW, round(free, 3), min_free_gb,
                 f"only {free:.2f} GB free under {path} (threshold {min_free_gb:g} GB): checkpoints and uploads "
                 "will fail; free space or move TUNEFORGE_HOME", data={"path": str(path)})
