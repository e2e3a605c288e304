"""Job use cases over every kind: create a training job, list, cancel, pause, resume, delete, restore.

Jobs of all kinds share one queue and one table; ``kind`` scopes a listing or a lookup to one kind (the
fine-tuning routes see only ``train`` jobs, the evaluation routes only ``evaluate`` jobs).
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config import TrainConfig
from tuneforge.errors import ConfigError, ConflictError, NotFoundError, RateLimitError, TuneforgeError
from tuneforge.services.catalog import fine_tuned_model_name, resolve_base_model
from tuneforge.services.files import input_file, link_into
from tuneforge.services.job_kinds import KINDS, job_error
from tuneforge.services.platform import Platform
from tuneforge.storage.records import (
    FINAL_STATES, CheckpointRecord, EventRecord, JobControl, JobRecord, JobStatus, JobUpdate, MetricRecord, Page,
    new_id, now,
)

S = JobStatus


def add_job(platform: Platform, job: JobRecord, *, message: str) -> JobRecord:
    """Insert a job and its first event, within the project's limits (see :func:`admit_job`)."""
    admit_job(platform, job)
    job = platform.store.add_job(job)
    event(platform, job.id, message)
    return job


def admit_job(platform: Platform, job: JobRecord) -> None:
    """Check a new job against its project's limits: its priority cap and its number of waiting jobs.

    Raises:
        ConfigError: A priority above the project's cap (``param: priority``).
        RateLimitError: The project has ``max_queued_jobs_per_project`` jobs waiting already (HTTP 429).
    """
    settings = platform.settings
    cap = settings.priority_cap(job.project)
    if job.priority > cap:
        raise ConfigError(f"priority {job.priority} is above this project's cap of {cap}", field="priority",
                          hint=f"use a priority of at most {cap}; the server's operator sets the caps")
    limit = settings.max_queued_jobs_per_project
    if limit:
        counts = platform.store.count_jobs(project=job.project)
        waiting = counts.get(S.QUEUED, 0) + counts.get(S.VALIDATING, 0)
        if waiting >= limit:
            raise RateLimitError(f"project {job.project} has {waiting} jobs waiting, its limit",
                                 hint="wait until some of them run, or cancel some")


def new_job_id(kind: str) -> str:
    """A fresh id with the kind's prefix (``ftjob-...``, ``evaljob-...``)."""
    return new_id(KINDS.get(kind).id_prefix)


def event(platform: Platform, job_id: str, message: str, *, level: str = "info") -> None:
    """Add a message event to a job."""
    platform.store.add_event(EventRecord(id=new_id("ftevent"), job_id=job_id, level=level, message=message))


# --- training jobs ------------------------------------------------------------------------------------
def create_train_job(platform: Platform, *, project: str, config: TrainConfig, priority: int = 0,
                     suffix: str | None = None) -> JobRecord:
    """Queue a training job from a TrainConfig (the native API and YAML shape).

    ``model`` is a base model name of the server; ``data.train`` / ``data.eval`` are file ids
    (``file-...``) or dataset ids (``ds-...``) of the project, or, with ``allow_local_paths``, server paths.
    """
    job_id = new_job_id("train")
    model_path = resolve_base_model(platform, config.model)
    data_dir = platform.settings.data_dir(job_id)
    try:
        data = {"train": _job_input(platform, config.data.train, project=project, target=data_dir / "train",
                                    field="data.train"),
                "eval": _job_input(platform, config.data.eval, project=project, target=data_dir / "validation",
                                   field="data.eval")}
        for path in (p for value in data.values() for p in _input_paths(value)):
            check_data(path, config=config)
    except TuneforgeError:
        shutil.rmtree(platform.settings.job_dir(job_id), ignore_errors=True)
        raise
    resolved = config.model_copy(update={"model": model_path, "output_dir": str(platform.settings.run_dir(job_id)),
                                         "data": config.data.model_copy(update=data)})
    request = {"api": "native", "suffix": suffix,
               "method": {"type": "dpo" if config.task.name == "dpo" else "supervised"},
               "fine_tuned_model_name": fine_tuned_model_name(base=config.model, project=project, suffix=suffix,
                                                               job_id=job_id)}
    job = JobRecord(id=job_id, project=project, model=config.model, config=resolved.model_dump(mode="json"),
                    kind="train", priority=priority, seed=config.seed, status=S.QUEUED, request=request,
                    training_file=next((s.path for s in config.data.train_sources()
                                        if (s.path or "").startswith(("file-", "ds-"))), None))
    return add_job(platform, job, message="Fine-tuning job queued")


def _job_input(platform: Platform, value: Any, *, project: str, target: Path, field: str) -> Any:
    """``data.train`` / ``data.eval`` with every file entry made a path the job reads (:func:`input_file`);
    ``{split: ...}`` and ``{dataset: name:version}`` entries stay as they are (the latter resolve when it runs)."""
    if isinstance(value, str):
        return input_file(platform, value, project=project, target=target, field=field)
    if not isinstance(value, list):
        return value
    return [source if source.path is None else source.model_copy(update={"path": input_file(
        platform, source.path, project=project, target=target.with_name(f"{target.name}-{n}"), field=f"{field}.{n}")})
        for n, source in enumerate(value)]


def _input_paths(value: Any) -> list[str]:
    """The files of a ``data.train`` / ``data.eval`` value after :func:`_job_input`."""
    if isinstance(value, str):
        return [value]
    return [source.path for source in value if source.path is not None] if isinstance(value, list) else []


def check_data(path: str, *, config: TrainConfig) -> None:
    """Read every record of a job's data file the way its task will (before the job is queued, as the
    OpenAI route checks its files); raises DataError naming the line of the first bad record."""
    from tuneforge.data import load_examples
    from tuneforge.data.preference import load_preference_pairs

    if config.task.name == "dpo":
        load_preference_pairs(path)
    else:
        load_examples(path, fmt=config.data.format, system_prompt=config.data.system_prompt)


@dataclass(frozen=True)
class TrainInputs:
    """What a caller's ``configure`` gets to build a training job's config from.

    Attributes:
        model_path: The model reference behind the base model name.
        files: Paths of the job's input files by parameter (``training_file``, ``validation_file``).
        run_dir: The job's run folder (the config's ``output_dir``).
        check: False for the dry run before the job exists (the files are not linked yet: check only the
            options); True once the files are in place (check them too).
    """

    model_path: str
    files: dict[str, Path]
    run_dir: Path
    check: bool


Configure = Callable[[TrainInputs], tuple[TrainConfig, dict[str, Any]]]


def create_checked_train_job(platform: Platform, *, project: str, model: str, files: dict[str, str],
                             configure: Configure, seed: int | None = None, priority: int = 0,
                             suffix: str | None = None, request: dict[str, Any] | None = None) -> JobRecord:
    """Create a training job whose files are checked after it exists (``validating_files``), then queue it.

    ``configure`` turns the inputs into the TrainConfig (and fields to keep in the job's ``request``); the
    OpenAI routes pass one that checks the files OpenAI's way. It runs once before the job exists (a bad
    option raises and no job is made) and once on the linked files: then an error fails the job with its code.

    Raises:
        NotFoundError: Unknown base model or file (``param`` says which).
        ConfigError: Options that make no valid TrainConfig, or a file of the wrong purpose.
    """
    model_path = resolve_base_model(platform, model)
    records = {param: platform.store.get_file(fid, project=project) for param, fid in files.items() if fid}
    for param, record in records.items():
        if record.purpose != "fine-tune":
            raise ConfigError(f"file {record.id} has purpose '{record.purpose}', not 'fine-tune'", field=param,
                              hint="upload it again with purpose=fine-tune")
    job_id = new_job_id("train")
    paths = {param: _input_path(platform, job_id, param) for param in records}
    inputs = TrainInputs(model_path=model_path, files=paths, run_dir=platform.settings.run_dir(job_id), check=False)
    configure(inputs)  # options that make no config are refused before the job exists
    seed = seed if seed is not None else secrets.randbelow(2**31)
    name = fine_tuned_model_name(base=model, project=project, suffix=suffix, job_id=job_id)
    job = JobRecord(id=job_id, project=project, model=model, config={}, kind="train", priority=priority, seed=seed,
                    training_file=files.get("training_file"), validation_file=files.get("validation_file"),
                    request={**(request or {}), "suffix": suffix, "fine_tuned_model_name": name})
    add_job(platform, job, message="Validating training file: " + str(files.get("training_file")))
    try:
        for param, record in records.items():
            link_into(platform, record, paths[param])
        config, extra = configure(dataclasses.replace(inputs, check=True))
    except TuneforgeError as exc:  # the job exists now: it fails with the error instead of staying validating
        error = job_error(exc)
        platform.store.update_job(job.id, JobUpdate(status=S.FAILED, error=error, finished_at=now()),
                                  from_states=(S.VALIDATING,))
        event(platform, job.id, f"Training file validation failed: {error['message']}", level="error")
        return platform.store.get_job(job.id)
    config = config.model_copy(update={"seed": seed})
    update = JobUpdate(status=S.QUEUED, request={**job.request, **extra}, config=config.model_dump(mode="json"))
    if platform.store.update_job(job.id, update, from_states=(S.VALIDATING,)):  # not if cancelled meanwhile
        event(platform, job.id, f"Files validated ({extra.get('examples', '?')} examples); fine-tuning job queued")
    return platform.store.get_job(job.id)


def _input_path(platform: Platform, job_id: str, param: str) -> Path:
    return platform.settings.data_dir(job_id) / f"{'train' if param == 'training_file' else 'validation'}.jsonl"


# --- every kind -----------------------------------------------------------------------------------------
def get_job(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> JobRecord:
    """A job of the project (of ``kind``, when given); raises NotFoundError."""
    job = platform.store.get_job(job_id, project=project)
    if kind is not None and job.kind != kind:
        raise NotFoundError(f"no {KINDS.get(kind).title.lower()} '{job_id}'",
                            hint=f"'{job_id}' is a {job.kind} job; look it up where {job.kind} jobs are listed")
    return job


def list_jobs(platform: Platform, *, project: str, kind: str | None = None, after: str | None = None,
              limit: int = 20) -> Page[JobRecord]:
    """Jobs of the project (of ``kind``, when given), newest first."""
    return platform.store.list_jobs(project=project, kind=kind, after=after, limit=limit)


def cancel_job(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> JobRecord:
    """Cancel: a waiting job at once; a running one is stopped by its worker (checkpoints are kept).

    Raises:
        ConflictError: The job already ended.
    """
    job = get_job(platform, job_id, project=project, kind=kind)
    title = KINDS.get(job.kind).title
    store = platform.store
    if store.update_job(job.id, JobUpdate(status=S.CANCELLED, finished_at=now(), control=None),
                        from_states=(S.VALIDATING, S.QUEUED, S.PAUSED)):
        event(platform, job.id, f"{title} cancelled")
    elif store.update_job(job.id, JobUpdate(control=JobControl.CANCEL), from_states=(S.RUNNING,)):
        event(platform, job.id, "Cancelling: the worker stops the job")
    else:
        raise ConflictError(f"job {job.id} is {job.status.value}: it cannot be cancelled", hint="only unfinished jobs can")
    return store.get_job(job.id)


def pause_job(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> JobRecord:
    """Pause: a queued job at once; a running one (of a pausable kind) checkpoints, then releases its worker.

    Raises:
        ConflictError: The job is not queued or running, or it runs and its kind cannot pause.
    """
    job = get_job(platform, job_id, project=project, kind=kind)
    job_kind = KINDS.get(job.kind)
    if job.status is S.RUNNING and job.control is JobControl.PAUSE:
        return job  # asked already: one request, one event
    if job.status is S.RUNNING and job.control is JobControl.CANCEL:
        raise ConflictError(f"job {job.id} is being cancelled: it cannot be paused", hint="wait for it to end")
    if platform.store.update_job(job.id, JobUpdate(status=S.PAUSED), from_states=(S.QUEUED,)):
        event(platform, job.id, f"{job_kind.title} paused")
    elif job_kind.pausable and platform.store.update_job(job.id, JobUpdate(control=JobControl.PAUSE),
                                                         from_states=(S.RUNNING,), cancel_pending=False):
        event(platform, job.id, "Pausing: the job checkpoints, then releases its worker")
    elif job.status is S.RUNNING:
        raise ConflictError(f"job {job.id} is a running {job.kind} job, which cannot pause",
                            hint="cancel it, or wait for it to finish")
    else:
        raise ConflictError(f"job {job.id} is {job.status.value}: only queued or running jobs can be paused")
    return platform.store.get_job(job.id)


def resume_job(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> JobRecord:
    """Put a paused job back in the queue; it continues from its newest checkpoint.

    Raises:
        ConflictError: The job is not paused.
    """
    job = get_job(platform, job_id, project=project, kind=kind)
    update = JobUpdate(status=S.QUEUED, worker_id=None, control=None)
    if not platform.store.update_job(job.id, update, from_states=(S.PAUSED,)):
        raise ConflictError(f"job {job.id} is {job.status.value}: only paused jobs can be resumed",
                            hint="pause it first, or wait until the pause is done")
    event(platform, job.id, f"{KINDS.get(job.kind).title} resumed: queued, continues from its newest checkpoint")
    return platform.store.get_job(job.id)


def delete_job(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> None:
    """Delete a finished job, its events, checkpoints and folder (not a model it made)."""
    job = get_job(platform, job_id, project=project, kind=kind)
    if job.status not in FINAL_STATES:
        raise ConflictError(f"job {job.id} is {job.status.value}", hint="cancel it first")
    if any(m.job_id == job.id for m in platform.store.list_models(project=project)):
        raise ConflictError(f"job {job.id} made a fine-tuned model that is still registered",
                            hint="delete the model first (DELETE /v1/models/ID)")
    platform.store.delete_job(job.id, project=project)
    shutil.rmtree(platform.settings.job_dir(job.id), ignore_errors=True)


def list_events(platform: Platform, job_id: str, *, project: str, kind: str | None = None, after: str | None = None,
                limit: int = 20) -> Page[EventRecord]:
    """Events of a job, newest first."""
    get_job(platform, job_id, project=project, kind=kind)
    return platform.store.list_events(job_id, after=after, limit=limit)


def list_metrics(platform: Platform, job_id: str, *, project: str) -> list[MetricRecord]:
    """Figures of every training step of a job."""
    get_job(platform, job_id, project=project)
    return platform.store.list_metrics(job_id)


def list_checkpoints(platform: Platform, job_id: str, *, project: str, after: str | None = None,
                     limit: int = 10) -> Page[CheckpointRecord]:
    """Checkpoints of a job, newest first."""
    get_job(platform, job_id, project=project)
    return platform.store.list_checkpoints(job_id, after=after, limit=limit)


def get_checkpoint(platform: Platform, checkpoint_id: str, *, project: str) -> CheckpointRecord:
    """A checkpoint of one of the project's jobs."""
    checkpoint = platform.store.get_checkpoint(checkpoint_id)
    platform.store.get_job(checkpoint.job_id, project=project)
    return checkpoint


def queue_position(platform: Platform, job_id: str, *, across_projects: bool = False) -> int | None:
    """1-based place of a queued job among its project's queued jobs, else ``None`` (``across_projects``:
    among every project's, which only an admin key may see)."""
    return platform.store.queue_position(job_id, across_projects=across_projects)


def job_progress(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> dict[str, Any]:
    """Status, step, loss, ETA and queue position of a job."""
    job = get_job(platform, job_id, project=project, kind=kind)
    return {"id": job.id, "kind": job.kind, "status": job.status.value,
            "queue_position": platform.store.queue_position(job.id), "attempts": job.attempts, **job.progress}


def job_logs(platform: Platform, job_id: str, *, project: str, kind: str | None = None, limit: int = 1000) -> list[str]:
    """The job's events as log lines, oldest first."""
    events = list_events(platform, job_id, project=project, kind=kind, limit=limit).data[::-1]
    return [f"{e.created_at:.3f} {e.level.upper():5} {e.message}" for e in events]


def restore_checkpoint(platform: Platform, checkpoint_id: str, *, project: str) -> JobRecord:
    """A new job with the same config that continues from ``checkpoint_id`` (the old job is untouched)."""
    from tuneforge.storage.rundir import RunDir, config_hash

    checkpoint = get_checkpoint(platform, checkpoint_id, project=project)
    source = platform.store.get_job(checkpoint.job_id, project=project)
    if not Path(checkpoint.path).is_dir():
        raise ConflictError(f"checkpoint {checkpoint_id} was removed from disk", hint="pick a newer checkpoint")
    job_id = new_job_id(source.kind)
    run = RunDir(platform.settings.run_dir(job_id))
    shutil.copytree(checkpoint.path, run.checkpoints / Path(checkpoint.path).name)
    config = {**source.config, "output_dir": str(run.root)}
    run.write_marker(config_hash=config_hash(config), status="interrupted")
    suffix = source.request.get("suffix")
    name = fine_tuned_model_name(base=source.model, project=project, suffix=suffix, job_id=job_id)
    job = dataclasses.replace(
        source, id=job_id, config=config, status=S.QUEUED, request={**source.request, "restored_from": checkpoint_id,
                                                                      "fine_tuned_model_name": name},
        **_fresh_job_fields())
    return add_job(platform, job, message=f"Restored from checkpoint {checkpoint_id} (step {checkpoint.step}) of {source.id}")


def _fresh_job_fields() -> dict[str, Any]:
    """The fields of a job record that a new job starts from (nothing run yet)."""
    return {"fine_tuned_model": None, "trained_tokens": None, "result_files": [], "result": None, "error": None,
            "progress": {}, "created_at": now(), "started_at": None, "finished_at": None, "worker_id": None,
            "heartbeat_at": None, "attempts": 0, "control": None, "seq": None}


# --- operations --------------------------------------------------------------------------------------------
def check_store(platform: Platform) -> None:
    """Raise StorageError when the database cannot be reached (the health check)."""
    platform.store.count_jobs()


def job_counts(platform: Platform, *, project: str | None = None) -> dict[JobStatus, int]:
    """Jobs by status of one project, or (``None``, admin) of every project (the monitoring figures)."""
    return platform.store.count_jobs(project=project)


def job_durations(platform: Platform, *, project: str | None = None) -> list[tuple[JobStatus, float]]:
    """``(status, seconds from start to end)`` of every finished job that started (of one project)."""
    return platform.store.job_durations(project=project)


def job_report(platform: Platform, job_id: str, *, project: str, kind: str | None = None) -> dict[str, Any]:
    """The JSON report a finished evaluation or compression job stored (its first result file).

    Raises:
        ConflictError: The job has not succeeded (yet), so there is no report.
    """
    import json

    from tuneforge.services.files import file_path

    job = get_job(platform, job_id, project=project, kind=kind)
    report_id = (job.result or {}).get("report_file")
    if job.status is not S.SUCCEEDED or report_id is None:
        raise ConflictError(f"job {job.id} is {job.status.value}: it has no report",
                            hint="a report is there once the job has succeeded; see its events for progress")
    return json.loads(file_path(platform, platform.store.get_file(report_id, project=project)).read_text())
