"""The routes every queued job kind of the native API shares: list, get, cancel, events as log lines, report."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query

from tuneforge.api import deps
from tuneforge.services import jobs
from tuneforge.services.platform import Platform
from tuneforge.storage.records import JobRecord

Plat = Depends(deps.platform)
Proj = Depends(deps.project)


def job_view(platform: Platform, job: JobRecord) -> dict[str, Any]:
    """A job as the native API shows it: the record, with its queue position."""
    return {**asdict(job), "queue_position": jobs.queue_position(platform, job.id)}


def add_job_routes(router: APIRouter, *, kind: str) -> None:
    """Add ``GET /``, ``GET /{id}``, ``POST /{id}/cancel``, ``GET /{id}/logs``, ``GET /{id}/progress`` and
    ``GET /{id}/report`` for jobs of ``kind`` to ``router`` (its prefix names the collection)."""

    @router.get("")
    def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100), platform: Platform = Plat,
                  project: str = Proj) -> dict:
        """Jobs of this kind, newest first."""
        page = jobs.list_jobs(platform, project=project, kind=kind, after=after, limit=limit)
        return {"data": [job_view(platform, j) for j in page.data], "has_more": page.has_more}

    @router.get("/{job_id}")
    def get_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
        """One job: status, progress, request, and its result once it succeeded."""
        return job_view(platform, jobs.get_job(platform, job_id, project=project, kind=kind))

    @router.post("/{job_id}/cancel")
    @router.put("/{job_id}/cancel", operation_id=f"cancel_{kind}_job_put")  # as the fine-tuning route
    def cancel_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
        """Cancel the job (a running one is stopped by its worker)."""
        return job_view(platform, jobs.cancel_job(platform, job_id, project=project, kind=kind))

    @router.get("/{job_id}/logs")
    def job_logs(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
        """The job's events as log lines, oldest first."""
        return {"lines": jobs.job_logs(platform, job_id, project=project, kind=kind)}

    @router.get("/{job_id}/progress")
    def job_progress(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
        """Status, step of the current phase, ETA, queue position."""
        return jobs.job_progress(platform, job_id, project=project, kind=kind)

    @router.get("/{job_id}/report")
    def job_report(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
        """The full JSON report of a succeeded job (409 before)."""
        return jobs.job_report(platform, job_id, project=project, kind=kind)
