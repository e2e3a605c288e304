"""Fine-tuning job use cases: create (OpenAI request or TrainConfig), list, cancel, pause, resume, restore."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from tuneforge.config import TrainConfig, validate_config
from tuneforge.errors import ConfigError, ConflictError, TuneforgeError
from tuneforge.jobs.runner import job_error
from tuneforge.jobs.translate import OpenAIJobRequest, resolve_hyperparameters, to_train_config
from tuneforge.jobs.validation import MIN_EXAMPLES, check_training_file
from tuneforge.services.catalog import resolve_base_model
from tuneforge.services.files import dataset_file, link_into
from tuneforge.services.platform import Platform
from tuneforge.storage.records import (
    CANCELLED, FAILED, FINAL_STATES, PAUSED, QUEUED, RUNNING, VALIDATING, CheckpointRecord, EventRecord, JobRecord,
    Page, new_id, now,
)


def create_openai_job(platform: Platform, *, project: str, request: OpenAIJobRequest) -> JobRecord:
    """Create a job from OpenAI's request: check the files (``validating_files``), then queue it.

    A bad training file fails the job with OpenAI's error code; a bad request raises before any job exists.

    Raises:
        NotFoundError: Unknown base model or file (``param`` says which).
        ConfigError: Options that make no valid TrainConfig, or a file of the wrong purpose.
    """
    if request.integrations:
        raise ConfigError("integrations are not supported by this server", field="integrations",
                          hint="remove 'integrations' from the request")
    model_path = resolve_base_model(platform, request.model)
    files = {"training_file": request.training_file, "validation_file": request.validation_file}
    records = {param: platform.store.get_file(fid, project=project) for param, fid in files.items() if fid}
    for param, record in records.items():
        if record.purpose != "fine-tune":
            raise ConfigError(f"file {record.id} has purpose '{record.purpose}', not 'fine-tune'", field=param,
                              hint="upload it again with purpose=fine-tune")
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    _train_config(request, model_path, examples=MIN_EXAMPLES, seed=seed, job_id="check", platform=platform)
    job = JobRecord(id=new_id("ftjob"), project=project, model=request.model, config={}, priority=request.priority,
                    training_file=request.training_file, validation_file=request.validation_file, seed=seed)
    suffix = request.suffix or ""
    job.request = {"api": "openai", "suffix": request.suffix, "metadata": request.metadata,
                   "method": {"type": request.method_type},
                   "fine_tuned_model_name": f"ft:{request.model}:{project}:{suffix}:{job.id.split('-', 1)[1][:12]}"}
    platform.store.add_job(job)
    _event(platform, job.id, "Validating training file: " + request.training_file)
    try:
        checks = {param: check_training_file(link_into(platform, record, _data_path(platform, job.id, param)),
                                             method=request.method_type, param=param)
                  for param, record in records.items()}
        config = _train_config(request, model_path, examples=checks["training_file"].examples, seed=seed,
                               job_id=job.id, platform=platform, with_validation="validation_file" in records)
    except TuneforgeError as exc:  # the job exists now: it fails with the error instead of staying validating
        return _fail(platform, job, job_error(exc))
    hyper = {k: v for k, v in config["__hyperparameters"].items()}
    job.request["hyperparameters"] = hyper
    job.request["method"] = {"type": request.method_type, request.method_type: {"hyperparameters": hyper}}
    job.request["examples"] = checks["training_file"].examples
    platform.store.transition(job.id, from_states=(VALIDATING,), status=QUEUED, request=job.request,
                              config=config["config"])
    _event(platform, job.id, f"Files validated ({job.request['examples']} examples); fine-tuning job queued")
    return platform.store.get_job(job.id)


def _train_config(request: OpenAIJobRequest, model_path: str, *, examples: int, seed: int, job_id: str,
                  platform: Platform, with_validation: bool = False) -> dict[str, Any]:
    hyper = resolve_hyperparameters(request.chosen_hyperparameters(), examples=examples,
                                    method_type=request.method_type)
    data = _data_path(platform, job_id, "training_file")
    raw = to_train_config(request, model_path=model_path, training_path=str(data),
                          validation_path=str(_data_path(platform, job_id, "validation_file")) if with_validation else None,
                          hyperparameters=hyper, seed=seed, output_dir=str(platform.settings.run_dir(job_id)))
    config = validate_config(raw, TrainConfig)
    return {"config": config.model_dump(mode="json"), "__hyperparameters": hyper}


def create_job(platform: Platform, *, project: str, config: TrainConfig, priority: int = 0,
               suffix: str | None = None) -> JobRecord:
    """Create a job from a TrainConfig (the native API and YAML shape).

    ``model`` is a base model name of the server; ``data.train`` / ``data.eval`` are file ids
    (``file-...``) or dataset ids (``ds-...``) of the project, or, with ``allow_local_paths``, server paths.
    """
    job = JobRecord(id=new_id("ftjob"), project=project, model=config.model, config={}, priority=priority,
                    seed=config.seed)
    model_path = resolve_base_model(platform, config.model)
    data = {"train": _native_data(platform, project, job.id, "training_file", config.data.train),
            "eval": _native_data(platform, project, job.id, "validation_file", config.data.eval)}
    resolved = config.model_copy(update={"model": model_path, "output_dir": str(platform.settings.run_dir(job.id)),
                                         "data": config.data.model_copy(update=data)})
    job.config = resolved.model_dump(mode="json")
    job.training_file = config.data.train if config.data.train.startswith(("file-", "ds-")) else None
    job.request = {"api": "native", "suffix": suffix, "method": {"type": "dpo" if config.task.name == "dpo" else "supervised"},
                   "fine_tuned_model_name": f"ft:{config.model}:{project}:{suffix or ''}:{job.id.split('-', 1)[1][:12]}"}
    job.status = QUEUED
    platform.store.add_job(job)
    _event(platform, job.id, "Fine-tuning job queued")
    return job


def _native_data(platform: Platform, project: str, job_id: str, param: str, value: str | None) -> str | None:
    if value is None:
        return None
    if value.startswith("file-"):
        record = platform.store.get_file(value, project=project)
    elif value.startswith("ds-"):
        record = dataset_file(platform, value, project=project)
    elif platform.settings.allow_local_paths:
        return str(Path(value).resolve())
    else:
        raise ConfigError(f"data file {value!r} is neither a file id nor a dataset id", field=f"data.{param}",
                          hint="upload it (POST /v1/files) and pass its id; server paths need allow_local_paths")
    suffix = Path(record.filename).suffix.lower() or ".jsonl"
    return str(link_into(platform, record, _data_path(platform, job_id, param).with_suffix(suffix)))


def _data_path(platform: Platform, job_id: str, param: str) -> Path:
    return platform.settings.data_dir(job_id) / f"{'train' if param == 'training_file' else 'validation'}.jsonl"


def _fail(platform: Platform, job: JobRecord, error: dict[str, Any]) -> JobRecord:
    platform.store.transition(job.id, from_states=(VALIDATING,), status=FAILED, error=error, finished_at=now())
    _event(platform, job.id, f"Training file validation failed: {error['message']}", level="error")
    return platform.store.get_job(job.id)


def _event(platform: Platform, job_id: str, message: str, *, level: str = "info") -> None:
    platform.store.add_event(EventRecord(id=new_id("ftevent"), job_id=job_id, level=level, message=message))


def get_job(platform: Platform, job_id: str, *, project: str) -> JobRecord:
    """A job of the project; raises NotFoundError."""
    return platform.store.get_job(job_id, project=project)


def list_jobs(platform: Platform, *, project: str, after: str | None = None, limit: int = 20) -> Page[JobRecord]:
    """Jobs of the project, newest first."""
    return platform.store.list_jobs(project=project, after=after, limit=limit)


def cancel_job(platform: Platform, job_id: str, *, project: str) -> JobRecord:
    """Cancel: a waiting job at once; a running one is stopped by its worker (checkpoints are kept).

    Raises:
        ConflictError: The job already ended.
    """
    job = platform.store.get_job(job_id, project=project)
    if platform.store.transition(job.id, from_states=(VALIDATING, QUEUED, PAUSED), status=CANCELLED,
                                 finished_at=now(), control=None):
        _event(platform, job.id, "Fine-tuning job cancelled")
    elif not platform.store.transition(job.id, from_states=(RUNNING,), control="cancel"):
        raise ConflictError(f"job {job.id} is {job.status}: it cannot be cancelled", hint="only unfinished jobs can")
    else:
        _event(platform, job.id, "Cancelling: the worker stops the job")
    return platform.store.get_job(job.id)


def pause_job(platform: Platform, job_id: str, *, project: str) -> JobRecord:
    """Pause: a queued job at once; a running one checkpoints, then releases its worker.

    Raises:
        ConflictError: The job is not queued or running.
    """
    job = platform.store.get_job(job_id, project=project)
    if platform.store.transition(job.id, from_states=(QUEUED,), status=PAUSED):
        _event(platform, job.id, "Fine-tuning job paused")
    elif platform.store.transition(job.id, from_states=(RUNNING,), control="pause"):
        _event(platform, job.id, "Pausing: the job checkpoints, then releases its worker")
    else:
        raise ConflictError(f"job {job.id} is {job.status}: only queued or running jobs can be paused")
    return platform.store.get_job(job.id)


def resume_job(platform: Platform, job_id: str, *, project: str) -> JobRecord:
    """Put a paused job back in the queue; it continues from its newest checkpoint.

    Raises:
        ConflictError: The job is not paused.
    """
    job = platform.store.get_job(job_id, project=project)
    if not platform.store.transition(job.id, from_states=(PAUSED,), status=QUEUED, worker_id=None, control=None):
        raise ConflictError(f"job {job.id} is {job.status}: only paused jobs can be resumed",
                            hint="pause it first, or wait until the pause is done")
    _event(platform, job.id, "Fine-tuning job resumed: queued, continues from its newest checkpoint")
    return platform.store.get_job(job.id)


def delete_job(platform: Platform, job_id: str, *, project: str) -> None:
    """Delete a finished job, its events, checkpoints and run directory (not a model it made)."""
    job = platform.store.get_job(job_id, project=project)
    if job.status not in FINAL_STATES:
        raise ConflictError(f"job {job.id} is {job.status}", hint="cancel it first")
    if any(m.job_id == job.id for m in platform.store.list_models(project=project)):
        raise ConflictError(f"job {job.id} made a fine-tuned model that is still registered",
                            hint="delete the model first (DELETE /v1/models/ID)")
    platform.store.delete_job(job.id, project=project)
    shutil.rmtree(platform.settings.run_dir(job.id).parent, ignore_errors=True)


def list_events(platform: Platform, job_id: str, *, project: str, after: str | None = None,
                limit: int = 20) -> Page[EventRecord]:
    """Events of a job, newest first."""
    platform.store.get_job(job_id, project=project)
    return platform.store.list_events(job_id, after=after, limit=limit)


def list_checkpoints(platform: Platform, job_id: str, *, project: str, after: str | None = None,
                     limit: int = 10) -> Page[CheckpointRecord]:
    """Checkpoints of a job, newest first."""
    platform.store.get_job(job_id, project=project)
    return platform.store.list_checkpoints(job_id, after=after, limit=limit)


def get_checkpoint(platform: Platform, checkpoint_id: str, *, project: str) -> CheckpointRecord:
    """A checkpoint of one of the project's jobs."""
    checkpoint = platform.store.get_checkpoint(checkpoint_id)
    platform.store.get_job(checkpoint.job_id, project=project)
    return checkpoint


def job_progress(platform: Platform, job_id: str, *, project: str) -> dict[str, Any]:
    """Status, step, loss, ETA and queue position of a job."""
    job = platform.store.get_job(job_id, project=project)
    return {"id": job.id, "status": job.status, "queue_position": platform.store.queue_position(job.id),
            "attempts": job.attempts, **job.progress}


def job_logs(platform: Platform, job_id: str, *, project: str, limit: int = 1000) -> list[str]:
    """The job's events as log lines, oldest first."""
    events = list_events(platform, job_id, project=project, limit=limit).data[::-1]
    return [f"{e.created_at:.3f} {e.level.upper():5} {e.message}" for e in events]


def restore_checkpoint(platform: Platform, checkpoint_id: str, *, project: str) -> JobRecord:
    """A new job with the same config that continues from ``checkpoint_id`` (the old job is untouched)."""
    from tuneforge.training.rundir import RunDir, config_hash

    checkpoint = get_checkpoint(platform, checkpoint_id, project=project)
    source = platform.store.get_job(checkpoint.job_id, project=project)
    if not Path(checkpoint.path).is_dir():
        raise ConflictError(f"checkpoint {checkpoint_id} was removed from disk", hint="pick a newer checkpoint")
    job = JobRecord(id=new_id("ftjob"), project=project, model=source.model, config={}, priority=source.priority,
                    training_file=source.training_file, validation_file=source.validation_file, seed=source.seed,
                    request={**source.request, "restored_from": checkpoint_id}, status=QUEUED)
    run = RunDir(platform.settings.run_dir(job.id))
    shutil.copytree(checkpoint.path, run.checkpoints / Path(checkpoint.path).name)
    job.config = {**source.config, "output_dir": str(run.root)}
    run.write_marker(config_hash=config_hash(job.config), status="interrupted")
    name = job.request.get("fine_tuned_model_name", "")
    job.request["fine_tuned_model_name"] = name.rsplit(":", 1)[0] + ":" + job.id.split("-", 1)[1][:12]
    platform.store.add_job(job)
    _event(platform, job.id, f"Restored from checkpoint {checkpoint_id} (step {checkpoint.step}) of {source.id}")
    return job

