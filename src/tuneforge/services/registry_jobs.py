"""The registry's part in jobs: a succeeded fine-tuning job registers its model, an evaluation job attaches
its scores to the version it evaluated, a compression job registers its output linked to its input's version.

Registered name of a fine-tuning job's model: the job's ``suffix``, else ``{base model}-ft`` (never the base
model's own name, which must keep meaning the base). The job's ``ft:`` id stays a valid model id and is kept
on the version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import TuneforgeError
from tuneforge.registry.models import name_from
from tuneforge.services.platform import Platform
from tuneforge.services.registry import attach_scores, register, register_compressed, version_of
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.records import JobRecord
from tuneforge.storage.rundir import RunDir

if TYPE_CHECKING:
    from tuneforge.jobs.kinds import JobContext, JobOutcome


def job_platform(context: JobContext) -> Platform:
    """The platform of a job process (its own store connection and the settings)."""
    return Platform(settings=context.settings, store=context.store, artifacts=Artifacts(context.settings.artifacts_dir))


def registered_name(job: JobRecord) -> str:
    """The registry name a fine-tuning job's model gets (see the module's docstring)."""
    wanted = job.request.get("suffix")
    if wanted:
        return name_from(wanted)
    return name_from(Path(job.model).name or job.model) + "-ft"


def job_model_version(platform: Platform, model: str, *, project: str) -> str | None:
    """``name:V`` of the version a job's ``model`` names (a registry reference or a registered ``ft:`` id),
    kept in the job's request so that its results go to that version even if an alias moves meanwhile."""
    version = version_of(platform, model, project=project)
    return version.ref if version is not None else None


def register_trained(context: JobContext, outcome: JobOutcome) -> None:
    """Register the model of a succeeded fine-tuning job (a failure is a warning event, the job stays succeeded)."""
    job = context.job
    _safely(context, "register the model", lambda: _say(context, register(
        job_platform(context), RunDir(context.run_dir).root, project=job.project, name=registered_name(job),
        created_by=f"job {job.id}", job_id=job.id, fine_tuned_model=outcome.fine_tuned_model)))


def attach_job_scores(context: JobContext, outcome: JobOutcome) -> None:
    """Attach an evaluation job's scores to the version it evaluated, when it evaluated one."""
    version = _input_version(context)
    if version is None or not outcome.result:
        return
    scores = {task: {**figures, "job_id": context.job.id} for task, figures in outcome.result.get("tasks", {}).items()}
    _safely(context, "attach the scores", lambda: attach_scores(context.store, version, scores))


def register_compression(context: JobContext, outcome: JobOutcome) -> None:
    """Register a compression job's output as a version linked to its input's version, when it had one."""
    parent = _input_version(context)
    if parent is None:
        return
    output = context.run_dir / "output"
    _safely(context, "register the compressed model", lambda: _say(context, register_compressed(
        job_platform(context), parent=parent, output=output, report=json.loads((output / "report.json").read_text()),
        created_by=f"job {context.job.id}", job_id=context.job.id)))


def _input_version(context: JobContext) -> Any:
    ref = context.job.request.get("model_version")
    if not ref:
        return None
    name, _, number = ref.rpartition(":")
    return context.store.get_model_version(project=context.job.project, name=name, version=int(number))


def _say(context: JobContext, version: Any) -> None:
    context.recorder.message(f"Registered model version {version.ref} ({version.kind})",
                             data={"model_version": version.ref})


def _safely(context: JobContext, what: str, action: Any) -> None:
    context.check_lease()  # registry writes are not fenced one by one: an attempt that lost the job stops here
    try:
        action()
    except (TuneforgeError, OSError) as exc:
        context.recorder.message(f"could not {what} in the registry: {exc}", level="warn")


def register_job(platform: Platform, job_id: str, *, project: str, name: str, created_by: str) -> Any:
    """Register the model of a succeeded fine-tuning job of the project as the next version of ``name`` (again,
    or under another name than the automatic one).

    Raises:
        NotFoundError: No such fine-tuning job in the project.
        ConflictError: The job has not succeeded.
    """
    from tuneforge.errors import ConflictError
    from tuneforge.storage.records import JobStatus

    job = platform.store.get_job(job_id, project=project)
    if job.kind != "train" or job.status is not JobStatus.SUCCEEDED:
        raise ConflictError(f"job {job_id} is a {job.kind} job in state {job.status}: only a succeeded fine-tuning "
                            "job has a model to register", hint="wait for it to succeed")
    return register(platform, platform.settings.run_dir(job.id), project=project, name=name, created_by=created_by,
                    job_id=job.id, fine_tuned_model=job.fine_tuned_model)
