"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning API (create, list, retrieve, cancel, pause, resume,
events, checkpoints)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from tuneforge.api import deps
from tuneforge.api.objects import as_page, checkpoint_object, event_object, job_object
from tuneforge.jobs.translate import OpenAIJobRequest
from tuneforge.services import jobs
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning (OpenAI)"])


def _job(platform: Platform, job) -> dict:
    return job_object(job, queue_position=platform.store.queue_position(job.id))


@router.post("")
def create_job(body: OpenAIJobRequest, platform: Platform = Depends(deps.platform),
               project: str = Depends(deps.project)) -> dict:
    """Create a job: validates the files, then queues it."""
    return _job(platform, jobs.create_openai_job(platform, project=project, request=body))


@router.get("")
def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100), platform: Platform = Depends(deps.platform),
              project: str = Depends(deps.project)) -> dict:
    """Jobs, newest first."""
    return as_page(jobs.list_jobs(platform, project=project, after=after, limit=limit), job_object)


@router.get("/{job_id}")
def retrieve_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """One job."""
    return _job(platform, jobs.get_job(platform, job_id, project=project))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Cancel a job."""
    return _job(platform, jobs.cancel_job(platform, job_id, project=project))


@router.post("/{job_id}/pause")
def pause_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Pause a job (a running one checkpoints first)."""
    return _job(platform, jobs.pause_job(platform, job_id, project=project))


@router.post("/{job_id}/resume")
def resume_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Resume a paused job from its newest checkpoint."""
    return _job(platform, jobs.resume_job(platform, job_id, project=project))


@router.get("/{job_id}/events")
def list_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
                platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Events, newest first."""
    return as_page(jobs.list_events(platform, job_id, project=project, after=after, limit=limit), event_object)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=100),
                     platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Checkpoints, newest first."""
    job = jobs.get_job(platform, job_id, project=project)
    checkpoints = jobs.list_checkpoints(platform, job_id, project=project, after=after, limit=limit)
    return as_page(checkpoints, lambda c: checkpoint_object(c, job))
