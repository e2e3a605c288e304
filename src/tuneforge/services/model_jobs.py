"""Evaluation and compression as jobs: the ``tuneforge eval`` and ``tuneforge compress`` requests, queued.

The request bodies name models the way the platform does (a base model name, a fine-tuned model id, or a
server path with ``allow_local_paths``) and data by file or dataset id; both are resolved when the job is
created, so a bad request is refused before anything is queued.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.compression.recipe import CompressionRecipe
from tuneforge.config import validate_config
from tuneforge.evaluation.suites import SuiteConfig
from tuneforge.services.catalog import resolve_model_reference
from tuneforge.services.files import input_file
from tuneforge.services.jobs import add_job, new_job_id
from tuneforge.services.platform import Platform
from tuneforge.services.registry_jobs import job_model_version
from tuneforge.storage.records import JobRecord, JobStatus


class ModelJobRequest(BaseModel):
    """What every job over one model names: the model and the job's priority."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A base model name, a fine-tuned model id of the project, a registered model "
                       "version (name, name:3, name@alias), or (with allow_local_paths) a model folder on the server.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first (-1000 to 1000).")


class EvaluationJobRequest(ModelJobRequest):
    """``POST /api/v1/evaluations``: evaluate a model on a suite (the ``tuneforge eval`` request)."""

    suite: SuiteConfig = Field(description="The tasks, metrics and options of 'tuneforge eval'; a task's 'data' is "
                               "a file id or a dataset id.")


class CompressionJobRequest(ModelJobRequest):
    """``POST /api/v1/compressions``: run a compression recipe on a model (the ``tuneforge compress`` request)."""

    recipe: CompressionRecipe = Field(description="The steps and options of 'tuneforge compress'; every 'data' is a "
                                      "file id or a dataset id.")


def create_evaluation_job(platform: Platform, *, project: str, request: EvaluationJobRequest) -> JobRecord:
    """Queue an evaluation job.

    Raises:
        NotFoundError: Unknown model, file or dataset.
        ConfigError: A task's data that is not an id (without allow_local_paths), or a suite that does not validate.
    """
    return _create(platform, project=project, kind="evaluate", model=request.model, priority=request.priority,
                   field="suite", body=request.suite, title="Evaluation job")


def create_compression_job(platform: Platform, *, project: str, request: CompressionJobRequest) -> JobRecord:
    """Queue a compression job; the compressed model is written under the job's folder.

    Raises:
        NotFoundError: Unknown model, file or dataset.
        ConfigError: A data reference that is not an id (without allow_local_paths).
    """
    return _create(platform, project=project, kind="compress", model=request.model, priority=request.priority,
                   field="recipe", body=request.recipe, title="Compression job")


def _create(platform: Platform, *, project: str, kind: str, model: str, priority: int, field: str, body: BaseModel,
            title: str) -> JobRecord:
    """A queued job whose config is ``{"model": path, field: body}`` with its data ids linked into the job."""
    job_id = new_job_id(kind)
    path = resolve_model_reference(platform, model, project=project)
    linked = _with_inputs(platform, body.model_dump(mode="json"), project=project, job_id=job_id, field=field)
    config = {"model": path, field: validate_config(linked, type(body)).model_dump(mode="json")}
    version = job_model_version(platform, model, project=project)  # results go to that registry version
    job = JobRecord(id=job_id, project=project, model=model, config=config, kind=kind, priority=priority,
                    status=JobStatus.QUEUED, request={"api": "native", "model_version": version})
    return add_job(platform, job, message=f"{title} queued")


def _with_inputs(platform: Platform, value: Any, *, project: str, job_id: str, field: str) -> Any:
    """``value`` with every ``data`` string (a file or dataset id) replaced by the job's link to that file."""
    if isinstance(value, list):
        return [_with_inputs(platform, v, project=project, job_id=job_id, field=f"{field}.{i}")
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        where = f"{field}.{key}"
        if key == "data" and isinstance(item, str):
            target = platform.settings.data_dir(job_id) / where.replace(".", "_")
            out[key] = input_file(platform, item, project=project, target=target, field=where)
        else:
            out[key] = _with_inputs(platform, item, project=project, job_id=job_id, field=where)
    return out
