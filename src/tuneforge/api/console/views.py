"""``/ui/api/...``: the JSON the console needs beyond the public routes (jobs of every kind, one job's page,
compared runs, record search, annotation). Same bearer key as every route."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from tuneforge.api.native.kind_routes import Plat, Proj, job_view
from tuneforge.services import annotation, job_views, jobs
from tuneforge.services.annotation import AnnotationRequest
from tuneforge.services.datasets import version_view
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/ui/api", tags=["web console"])
ACTIONS = {"cancel": jobs.cancel_job, "pause": jobs.pause_job, "resume": jobs.resume_job}


@router.get("/whoami")
def whoami(project: str = Proj) -> dict:
    """The project of the key (the login check)."""
    return {"project": project}


@router.get("/jobs")
def list_jobs(limit: int = Query(50, ge=1, le=100), platform: Platform = Plat, project: str = Proj) -> dict:
    """Jobs of every kind, newest first, with queue position and progress."""
    page = jobs.list_jobs(platform, project=project, after=None, limit=limit)
    return {"data": [job_view(platform, j) for j in page.data], "has_more": page.has_more}


@router.get("/jobs/{job_id}")
def job_detail(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """A job with progress, curves, events, checkpoints and report."""
    return job_views.job_detail(platform, job_id, project=project)


@router.post("/jobs/{job_id}/{action}")
def control_job(job_id: str, action: Literal["cancel", "pause", "resume"], platform: Platform = Plat,
                project: str = Proj) -> dict:
    """Cancel, pause or resume a job of any kind."""
    return job_view(platform, ACTIONS[action](platform, job_id, project=project))


@router.get("/compare")
def compare(job: list[str] = Query(..., description="Job ids (2 to 8)."), platform: Platform = Plat,
            project: str = Proj) -> dict:
    """Curves and final figures of runs; the significance verdict of two evaluation jobs."""
    return job_views.compare_jobs(platform, job, project=project)


@router.get("/data/{ref}/records")
def search_records(ref: str, q: str = "", offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=500),
                   platform: Platform = Plat, project: str = Proj) -> dict:
    """Records of a version whose text contains ``q``."""
    return annotation.search_records(platform, ref, project=project, query=q, offset=offset, limit=limit)


@router.post("/data/{ref}/annotate")
def annotate(ref: str, body: AnnotationRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Save reviews as the next version of the data set (and edits as preference pairs in ``pairs_to``)."""
    outcome = annotation.annotate_data(platform, ref, body, project=project)
    pairs = outcome.pairs
    return {**version_view(outcome.reviewed.version), "created": outcome.reviewed.created,
            "pairs": None if pairs is None else {**version_view(pairs.version), "created": pairs.created}}
