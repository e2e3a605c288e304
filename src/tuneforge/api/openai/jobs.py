"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning API (create, list, retrieve, cancel, pause, resume,
events, checkpoints), over the job services; only ``train`` jobs are seen here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from tuneforge.api import deps
from tuneforge.api.openai.file_checks import MIN_EXAMPLES, check_training_file
from tuneforge.api.openai.objects import as_page, checkpoint_object, event_object, job_object
from tuneforge.api.openai.protocol import OpenAIJobRequest, resolve_hyperparameters, to_train_config
from tuneforge.config import TrainConfig, validate_config
from tuneforge.errors import ConfigError
from tuneforge.services import jobs
from tuneforge.services.jobs import Configure, TrainInputs
from tuneforge.services.platform import Platform
from tuneforge.storage.records import JobRecord

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning (OpenAI)"])
TRAIN = "train"


def _job(platform: Platform, job: JobRecord) -> dict:
    return job_object(job, queue_position=jobs.queue_position(platform, job.id))


def configure(request: OpenAIJobRequest, *, retention: int | None = 3) -> Configure:
    """How an OpenAI request becomes a TrainConfig: files checked OpenAI's way, ``"auto"`` resolved."""

    def build(inputs: TrainInputs) -> tuple[TrainConfig, dict[str, Any]]:
        examples = MIN_EXAMPLES
        if inputs.check:
            checks = {param: check_training_file(path, method=request.method_type, param=param)
                      for param, path in inputs.files.items()}
            examples = checks["training_file"].examples
        hyper = resolve_hyperparameters(request.chosen_hyperparameters(), examples=examples,
                                        method_type=request.method_type)
        validation = inputs.files.get("validation_file")
        raw = to_train_config(request, model_path=inputs.model_path, training_path=str(inputs.files["training_file"]),
                              validation_path=str(validation) if validation else None, hyperparameters=hyper,
                              seed=request.seed or 0, output_dir=str(inputs.run_dir), save_total_limit=retention)
        method = {"type": request.method_type, request.method_type: {"hyperparameters": hyper}}
        return validate_config(raw, TrainConfig, strict=True), {"hyperparameters": hyper, "method": method, "examples": examples}

    return build


def create_openai_job(platform: Platform, *, project: str, request: OpenAIJobRequest) -> JobRecord:
    """Create a training job from OpenAI's request: its files are checked once the job exists
    (``validating_files``); a bad file fails the job with OpenAI's error code, a bad option raises first."""
    if request.integrations:
        raise ConfigError("integrations are not supported by this server", field="integrations",
                          hint="remove 'integrations' from the request")
    return jobs.create_checked_train_job(
        platform, project=project, model=request.model, seed=request.seed,
        configure=configure(request, retention=platform.settings.checkpoint_retention),
        files={"training_file": request.training_file, "validation_file": request.validation_file},
        priority=request.priority, suffix=request.suffix,
        request={"api": "openai", "metadata": request.metadata, "method": {"type": request.method_type},
                 "nproc": request.tuneforge.nproc if request.tuneforge else 1})


@router.post("")
def create_job(body: OpenAIJobRequest, platform: Platform = Depends(deps.platform),
               project: str = Depends(deps.project)) -> dict:
    """Create a job: validates the files, then queues it."""
    return _job(platform, create_openai_job(platform, project=project, request=body))


@router.get("")
def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100), platform: Platform = Depends(deps.platform),
              project: str = Depends(deps.project)) -> dict:
    """Jobs, newest first."""
    page = jobs.list_jobs(platform, project=project, kind=TRAIN, after=after, limit=limit)
    return as_page(page, lambda job: _job(platform, job))  # with queue_position, as retrieve gives it


@router.get("/{job_id}")
def retrieve_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """One job."""
    return _job(platform, jobs.get_job(platform, job_id, project=project, kind=TRAIN))


@router.post("/{job_id}/cancel")
def cancel_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Cancel a job."""
    return _job(platform, jobs.cancel_job(platform, job_id, project=project, kind=TRAIN))


@router.post("/{job_id}/pause")
def pause_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Pause a job (a running one checkpoints first)."""
    return _job(platform, jobs.pause_job(platform, job_id, project=project, kind=TRAIN))


@router.post("/{job_id}/resume")
def resume_job(job_id: str, platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Resume a paused job from its newest checkpoint."""
    return _job(platform, jobs.resume_job(platform, job_id, project=project, kind=TRAIN))


@router.get("/{job_id}/events")
def list_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
                platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Events, newest first."""
    return as_page(jobs.list_events(platform, job_id, project=project, kind=TRAIN, after=after, limit=limit),
                   event_object)


@router.get("/{job_id}/checkpoints")
def list_checkpoints(job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=100),
                     platform: Platform = Depends(deps.platform), project: str = Depends(deps.project)) -> dict:
    """Checkpoints, newest first."""
    job = jobs.get_job(platform, job_id, project=project, kind=TRAIN)
    checkpoints = jobs.list_checkpoints(platform, job_id, project=project, after=after, limit=limit)
    return as_page(checkpoints, lambda c: checkpoint_object(c, job))
