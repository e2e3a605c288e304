"""``/api/v1/compressions``: compression jobs (the ``tuneforge compress`` request), their status and reports."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.native.kind_routes import Plat, Proj, add_job_routes, job_view
from tuneforge.services import model_jobs
from tuneforge.services.model_jobs import CompressionJobRequest
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/compressions", tags=["compressions (native)"])


@router.post("")
def create_compression(body: CompressionJobRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Queue a compression recipe on a model; every 'data' in the recipe is a file or dataset id."""
    return job_view(platform, model_jobs.create_compression_job(platform, project=project, request=body))


add_job_routes(router, kind="compress")
