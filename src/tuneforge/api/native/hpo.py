"""``/api/v1/hpo/studies``: hyperparameter-search studies queued as ``hpo_trial`` jobs, their state and control."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query

from tuneforge.api.native.kind_routes import Plat, Proj, add_job_routes
from tuneforge.services import hpo
from tuneforge.services.hpo import StudyRequest
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/hpo/studies", tags=["hyperparameter search (native)"])
trials_router = APIRouter(prefix="/api/v1/hpo/trials", tags=["hyperparameter search (native)"])
add_job_routes(trials_router, kind="hpo_trial")  # each trial job: status, logs, progress, like any job


@router.post("")
def create_study(body: StudyRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """Create a study (checked before anything is queued) and queue one trial job per trial."""
    return hpo.create_platform_study(platform, project=project, request=body)


@router.get("")
def list_studies(platform: Platform = Plat, project: str = Proj) -> dict:
    """The project's studies: state, trial counts, best values."""
    return {"data": hpo.list_platform_studies(platform, project=project)}


@router.get("/{name}")
def get_study(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """One study with its trials (state, values, parameters, steps, job id)."""
    return hpo.study_view(hpo.get_platform_study(platform, name, project=project))


@router.get("/{name}/importances")
def get_importances(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """fANOVA parameter importances per objective (from 2 complete trials on)."""
    return hpo.study_importances(hpo.get_platform_study(platform, name, project=project))


@router.post("/{name}/pause")
def pause_study(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """No new trial starts; running trials finish; queued trial jobs are held."""
    return hpo.control_platform_study(platform, name, project=project, action="pause")


@router.post("/{name}/resume")
def resume_study(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Trials start again; trial jobs are queued for what is missing."""
    return hpo.control_platform_study(platform, name, project=project, action="resume")


@router.post("/{name}/cancel")
def cancel_study(name: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Stop the study: its queued and running trial jobs are cancelled; finished trials are kept."""
    return hpo.control_platform_study(platform, name, project=project, action="cancel")


@router.post("/{name}/train-best")
def train_best(name: str, priority: int = Query(0, ge=-1000, le=1000), platform: Platform = Plat,
               project: str = Proj) -> dict:
    """Queue a fine-tuning job of the study's best config (a normal train job: /api/v1/fine-tuning/jobs/{id})."""
    return asdict(hpo.train_best_job(platform, name, project=project, priority=priority))
