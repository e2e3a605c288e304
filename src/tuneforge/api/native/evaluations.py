"""``/api/v1/evaluations``: evaluation jobs (the ``tuneforge eval`` request), their status and reports."""

from __future__ import annotations

from fastapi import APIRouter

from tuneforge.api.native.kind_routes import Plat, Proj, add_job_routes, job_view
from tuneforge.services import model_jobs
from tuneforge.services.model_jobs import EvaluationJobRequest
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations (native)"])


@router.post("")
def create_evaluation(body: EvaluationJobRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Queue an evaluation of a model on a suite; task data are file or dataset ids."""
    return job_view(platform, model_jobs.create_evaluation_job(platform, project=project, request=body))


add_job_routes(router, kind="evaluate")
