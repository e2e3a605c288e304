"""The ``serve_update`` job kind: one cycle of an incremental update, run by any worker (registered in
``job_kinds``), and its request (``POST /api/v1/updates``).

A cycle counts the records the data set gained since version ``since``; with fewer than ``min_new`` it ends
``skipped``; else it runs :func:`services.online.update_model` (train, register, gate, go live). Each cycle is
an event of the job, with the figures in its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.evaluation.suites import SuiteConfig
from tuneforge.jobs.kinds import JobContext, JobKind, JobOutcome
from tuneforge.services.files import input_file
from tuneforge.services.online import UpdateRequest, check_update, count_new_records, update_model
from tuneforge.services.platform import Platform
from tuneforge.storage.records import JobRecord, JobStatus


class UpdateJobRequest(UpdateRequest):
    """``POST /api/v1/updates``: one update cycle as a job (``tuneforge update`` on the platform)."""

    suite: SuiteConfig = Field(description="The held-out suite of the gate; a task's 'data' is a file id or a "
                               "dataset id.")
    min_new: int = Field(0, ge=0, description="Skip the cycle when the data set gained fewer records since 'since'.")
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first (-1000 to 1000).")


def create_update_job(platform: Platform, *, project: str, request: UpdateJobRequest) -> JobRecord:
    """Queue one update cycle; the model, alias and data set are checked first, the suite's data linked in.

    Raises:
        NotFoundError: Unknown model, alias, data set, file or dataset id.
        ConfigError: The live version is not an adapter, or a suite's data is not an id.
    """
    from tuneforge.services.jobs import add_job, new_job_id  # services.jobs imports the kinds, this one included

    job_id = new_job_id("serve_update")
    parent = check_update(platform, request, project=project)
    suite = request.suite.model_dump(mode="json")
    for index, task in enumerate(suite["tasks"]):
        if task.get("data"):
            target = platform.settings.data_dir(job_id) / f"suite_{index}{Path(task['data']).suffix or '.jsonl'}"
            task["data"] = input_file(platform, task["data"], project=project, target=target,
                                      field=f"suite.tasks.{index}.data")
    config = {**request.model_dump(mode="json", by_alias=True), "suite": suite}
    job = JobRecord(id=job_id, project=project, model=request.name, config=config, kind="serve_update",
                    priority=request.priority, status=JobStatus.QUEUED,
                    request={"api": "native", "model_version": parent.ref})
    return add_job(platform, job, message=f"Update job queued: {request.name}@{request.from_alias} on "
                   f"{request.dataset} since version {request.since}")


class ServeUpdateKind(JobKind):
    """An update cycle job: new records counted, then (when there are enough) the update and its gate."""

    name, title, id_prefix = "serve_update", "Update job", "updjob"

    def run(self, context: JobContext) -> JobOutcome:
        from tuneforge.services.job_kinds import pause_callback
        from tuneforge.services.registry_jobs import job_platform

        job, platform = context.job, job_platform(context)
        config = dict(job.config)
        min_new = int(config.pop("min_new", 0))
        config.pop("priority", None)
        request = UpdateRequest.model_validate(config)
        new = count_new_records(platform, request.dataset, since=request.since, project=job.project)
        context.recorder.message(f"Update cycle (attempt {job.attempts}): {new} new records in {request.dataset} "
                                 f"since version {request.since} (at least {min_new} needed)",
                                 data={"new_records": new, "min_new": min_new})
        if new < min_new or new == 0:
            return JobOutcome(result={"state": "skipped", "new_records": new, "min_new": min_new})
        result = update_model(platform, request, project=job.project, actor=f"job {job.id}", run_dir=context.run_dir,
                              progress=context.recorder, resume=True, job_id=job.id, check=context.check_lease,
                              extra_callbacks=[pause_callback(context.pause, check=context.check_lease)])
        context.recorder.message(f"Update cycle done: {result.version.ref} gate {result.gate['status']}"
                                 + (f", live as {result.live}" if result.live else ", not served"),
                                 data={"update": result.view()})
        return JobOutcome(result={"state": "updated", "new_records": new, **result.view()})

    def error_of(self, exc: BaseException) -> dict[str, Any]:
        if isinstance(exc, ConfigError):
            return {"code": "invalid_config", "message": str(exc), "param": exc.field}
        if isinstance(exc, TuneforgeError):
            return {"code": "update_failed", "message": str(exc), "param": None}
        return super().error_of(exc)
