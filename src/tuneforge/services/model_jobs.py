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
from tuneforge.storage.records import JobRecord, JobStatus


class EvaluationJobRequest(BaseModel):
    """``POST /api/v1/evaluations``: evaluate a model on a suite (the ``tuneforge eval`` request)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A base model name, a fine-tuned model id of the project, or (with "
                       "allow_local_paths) a model folder on the server.")
    suite: SuiteConfig = Field(description="The tasks, metrics and options of 'tuneforge eval'; a task's 'data' is "
                               "a file id or a dataset id.")
    priority: int = Field(0, description="Higher runs first.")


class CompressionJobRequest(BaseModel):
    """``POST /api/v1/compressions``: run a compression recipe on a model (the ``tuneforge compress`` request)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A base model name, a fine-tuned model id of the project, or (with "
                       "allow_local_paths) a model folder on the server.")
    recipe: CompressionRecipe = Field(description="The steps and options of 'tuneforge compress'; every 'data' is a "
                                      "file id or a dataset id.")
    priority: int = Field(0, description="Higher runs first.")


def create_evaluation_job(platform: Platform, *, project: str, request: EvaluationJobRequest) -> JobRecord:
    """Queue an evaluation job.

    Raises:
        NotFoundError: Unknown model, file or dataset.
        ConfigError: A task's data that is not an id (without allow_local_paths), or a suite that does not validate.
    """
    job_id = new_job_id("evaluate")
    model = resolve_model_reference(platform, request.model, project=project)
    suite = _with_inputs(platform, request.suite.model_dump(mode="json"), project=project, job_id=job_id,
                         field="suite")
    config = {"model": model, "suite": validate_config(suite, SuiteConfig).model_dump(mode="json")}
    job = JobRecord(id=job_id, project=project, model=request.model, config=config, kind="evaluate",
                    priority=request.priority, status=JobStatus.QUEUED, request={"api": "native"})
    return add_job(platform, job, message="Evaluation job queued")


def create_compression_job(platform: Platform, *, project: str, request: CompressionJobRequest) -> JobRecord:
    """Queue a compression job; the compressed model is written under the job's folder.

    Raises:
        NotFoundError: Unknown model, file or dataset.
        ConfigError: A data reference that is not an id (without allow_local_paths).
    """
    job_id = new_job_id("compress")
    model = resolve_model_reference(platform, request.model, project=project)
    recipe = _with_inputs(platform, request.recipe.model_dump(mode="json"), project=project, job_id=job_id,
                          field="recipe")
    config = {"model": model, "recipe": validate_config(recipe, CompressionRecipe).model_dump(mode="json")}
    job = JobRecord(id=job_id, project=project, model=request.model, config=config, kind="compress",
                    priority=request.priority, status=JobStatus.QUEUED, request={"api": "native"})
    return add_job(platform, job, message="Compression job queued")


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
