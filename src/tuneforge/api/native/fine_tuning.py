"""``/api/v1/fine-tuning``: the native API, over the same services and the same TrainConfig as the YAML."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from tuneforge.api import deps
from tuneforge.config import TrainConfig, validate_config
from tuneforge.services import catalog, files, jobs
from tuneforge.services.platform import Platform

router = APIRouter(prefix="/api/v1/fine-tuning", tags=["fine-tuning (native)"])
Plat = Depends(deps.platform)
Proj = Depends(deps.project)


class DatasetRequest(BaseModel):
    """A dataset over an uploaded file."""

    name: str = Field(description="A name for the dataset.")
    file_id: str = Field(description="Id of an uploaded file (POST /v1/files).")


class ModelCheck(BaseModel):
    """A base model name to check."""

    model: str = Field(description="Base model name.")


def _page(records: Any) -> dict[str, Any]:
    return {"data": [asdict(r) for r in records.data], "has_more": records.has_more}


TRAIN = "train"


@router.post("/jobs")
def create_job(config: TrainConfig, priority: int = Query(0, ge=-1000, le=1000),
               suffix: str | None = Query(None, pattern=catalog.SUFFIX_PATTERN), platform: Platform = Plat,
               project: str = Proj, raw: Any = Depends(deps.json_body)) -> dict:
    """Queue a job from a TrainConfig (the YAML shape); ``data.train`` is a file or dataset id."""
    config = validate_config(raw, TrainConfig, strict=True)  # the body again, without coercion
    return asdict(jobs.create_train_job(platform, project=project, config=config, priority=priority, suffix=suffix))


@router.get("/jobs")
def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100), platform: Platform = Plat,
              project: str = Proj) -> dict:
    """Jobs, newest first."""
    return _page(jobs.list_jobs(platform, project=project, kind=TRAIN, after=after, limit=limit))


@router.get("/jobs/{job_id}")
def get_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """One job with its config."""
    return asdict(jobs.get_job(platform, job_id, project=project, kind=TRAIN))


@router.delete("/jobs/{job_id}")
def delete_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Delete a finished job and its run directory."""
    jobs.delete_job(platform, job_id, project=project, kind=TRAIN)
    return {"id": job_id, "deleted": True}


@router.put("/jobs/{job_id}/cancel")
def cancel_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Cancel a job."""
    return asdict(jobs.cancel_job(platform, job_id, project=project, kind=TRAIN))


@router.post("/jobs/{job_id}/pause")
def pause_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Pause a job."""
    return asdict(jobs.pause_job(platform, job_id, project=project, kind=TRAIN))


@router.post("/jobs/{job_id}/resume")
def resume_job(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Resume a paused job."""
    return asdict(jobs.resume_job(platform, job_id, project=project, kind=TRAIN))


@router.get("/jobs/{job_id}/logs")
def job_logs(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """The job's events as log lines, oldest first."""
    return {"lines": jobs.job_logs(platform, job_id, project=project, kind=TRAIN)}


@router.get("/jobs/{job_id}/metrics")
def job_metrics(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Figures of every step."""
    return {"data": [{"step": m.step, **m.data} for m in jobs.list_metrics(platform, job_id, project=project)]}


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Status, step, loss, ETA, queue position."""
    return jobs.job_progress(platform, job_id, project=project, kind=TRAIN)


@router.get("/jobs/{job_id}/checkpoints")
def job_checkpoints(job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=100),
                    platform: Platform = Plat, project: str = Proj) -> dict:
    """Checkpoints, newest first."""
    return _page(jobs.list_checkpoints(platform, job_id, project=project, after=after, limit=limit))


@router.get("/checkpoints/{checkpoint_id}")
def get_checkpoint(checkpoint_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """One checkpoint."""
    return asdict(jobs.get_checkpoint(platform, checkpoint_id, project=project))


@router.post("/checkpoints/{checkpoint_id}/restore")
def restore_checkpoint(checkpoint_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """A new job that continues from this checkpoint."""
    return asdict(jobs.restore_checkpoint(platform, checkpoint_id, project=project))


@router.get("/models")
def list_models(platform: Platform = Plat, project: str = Proj) -> dict:
    """Base and fine-tuned models."""
    return {"data": catalog.list_models(platform, project=project)}


@router.post("/models/validate")
def validate_model(body: ModelCheck, platform: Platform = Plat, project: str = Proj) -> dict:
    """Whether a base model name resolves to a loadable model folder."""
    return {"model": body.model, "valid": True, **catalog.check_base_model(platform, body.model)}


@router.get("/configs/templates")
def config_templates(project: str = Proj) -> dict:
    """The commented example config of every method."""
    from tuneforge.config import method_names
    from tuneforge.services.training import template

    return {"data": [{"name": name, "yaml": template(name)} for name in method_names()]}


@router.post("/configs/validate")
def validate_train_config(body: dict[str, Any] = Body(...), project: str = Proj) -> dict:
    """Validate a TrainConfig mapping; returns it with every default (errors name the field and a hint)."""
    return {"valid": True, "config": validate_config(body, TrainConfig).model_dump(mode="json")}


@router.post("/datasets")
def create_dataset(body: DatasetRequest, platform: Platform = Plat, project: str = Proj) -> dict:
    """A dataset over an uploaded file (validated)."""
    return asdict(files.create_dataset(platform, project=project, name=body.name, file_id=body.file_id))


@router.get("/datasets")
def list_datasets(after: str | None = None, limit: int = Query(100, ge=1, le=1000), platform: Platform = Plat,
                  project: str = Proj) -> dict:
    """Datasets, newest first."""
    return _page(files.list_datasets(platform, project=project, after=after, limit=limit))


@router.get("/datasets/{dataset_id}")
def get_dataset(dataset_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """One dataset."""
    return asdict(files.get_dataset(platform, dataset_id, project=project))


@router.post("/datasets/{dataset_id}/validate")
def validate_dataset(dataset_id: str, platform: Platform = Plat, project: str = Proj) -> dict:
    """Read every record again; returns the format and the number of examples."""
    return asdict(files.validate_dataset(platform, dataset_id, project=project))
