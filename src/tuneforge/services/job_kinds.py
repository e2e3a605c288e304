"""The job kinds of the platform: ``train``, ``evaluate`` and ``compress``, registered once here.

Each kind runs in a job process (see ``jobs.process``) over the same library functions as the CLI:
``run_training``, ``services.evaluation.evaluate`` and ``services.compression.compress_model``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, DataError, NotFoundError, TuneforgeError
from tuneforge.jobs.kinds import JobContext, JobKind, JobKinds, JobOutcome, JobPaused
from tuneforge.services.hpo_kind import HpoTrialKind
from tuneforge.services.job_launch import job_nproc, run_launched
from tuneforge.services.update_kind import ServeUpdateKind
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.records import FileRecord, ModelRecord, new_id
from tuneforge.storage.rundir import COMPLETED, RunDir

if TYPE_CHECKING:
    from transformers import TrainerCallback

# Imported once by the job forkserver, so that a job process starts with torch and the trainers loaded.
PRELOAD = ["tuneforge.services.job_preload"]


def store_result_file(context: JobContext, *, filename: str, data: bytes, purpose: str) -> FileRecord:
    """Keep bytes a job produced as a file of the job's project (by sha256, like uploads)."""
    digest, _ = Artifacts(context.settings.artifacts_dir).put_bytes(data)
    record = FileRecord(id=new_id("file"), project=context.job.project, filename=filename, purpose=purpose,
                        bytes=len(data), sha256=digest)
    return context.store.add_file(record)


def _with_dataset_files(context: JobContext, config: Any) -> Any:
    """``config`` with its ``{dataset: name:version}`` data entries resolved to files of the job's project."""
    from functools import partial

    from tuneforge.services.data_reports import materialize_data_version
    from tuneforge.services.registry_jobs import job_platform
    from tuneforge.services.training import resolve_datasets

    resolver = partial(materialize_data_version, job_platform(context), project=context.job.project)
    return resolve_datasets(config, resolve_dataset=resolver)


class TrainKind(JobKind):
    """A fine-tuning job: ``run_training`` on the job's TrainConfig, resuming from its newest checkpoint."""

    name, title, id_prefix, pausable = "train", "Fine-tuning job", "ftjob", True

    def run(self, context: JobContext) -> JobOutcome:
        from tuneforge.config import TrainConfig
        from tuneforge.training.run import run_training

        job, run = context.job, RunDir(context.run_dir)
        config = TrainConfig.model_validate({**job.config, "output_dir": str(run.root)})
        config = _with_dataset_files(context, config)
        # run_training says which checkpoint it resumes from, in the next event.
        context.recorder.message(f"Fine-tuning job started (attempt {job.attempts})",
                                 data={"attempt": job.attempts, "pid": os.getpid(), "worker": context.worker_id})
        if (run.read_marker() or {}).get("status") == COMPLETED:
            summary = run.read_summary()  # trained before a crash: just record it
        elif job_nproc(job) > 1:
            summary = run_launched(context, config, nproc=job_nproc(job))  # under torchrun
        else:
            from tuneforge.services.alerts import job_monitor
            from tuneforge.services.runs import collect_provenance

            summary = run_training(config, settings=context.settings, resume=True, progress=context.recorder,
                                   extra_callbacks=[pause_callback(context.pause, check=context.check_lease),
                                                    job_monitor(context, config)],
                                   provenance=collect_provenance(config), fence=context.check_lease).summary
        table = metrics_csv(run.metrics).encode()
        result = store_result_file(context, filename="step_metrics.csv", data=table, purpose="fine-tune-results")
        step = summary.get("global_step")
        return JobOutcome(
            result={k: summary.get(k) for k in ("global_step", "train_loss", "eval_loss", "final_loss", "trained_tokens",
                                                "tokens_per_second", "runtime_seconds")},
            result_files=[result.id], fine_tuned_model=job.request.get("fine_tuned_model_name"),
            trained_tokens=int(summary.get("trained_tokens") or 0),
            progress={"step": step, "total_steps": step, "train_loss": summary.get("final_loss"), "eta_seconds": 0},
        )

    def devices_needed(self, job: Any) -> int:
        """One GPU per training process (``tuneforge.nproc``)."""
        return job_nproc(job)

    def on_succeeded(self, context: JobContext, outcome: JobOutcome) -> None:
        run, job = RunDir(context.run_dir), context.job
        if outcome.fine_tuned_model is None:
            return
        path = run.adapter if run.has_adapter() else run.model
        context.store.add_model(ModelRecord(id=outcome.fine_tuned_model, project=job.project, job_id=job.id,
                                            base_model=job.model, path=str(path)))
        context.recorder.message(f"New fine-tuned model created: {outcome.fine_tuned_model}")
        from tuneforge.services.registry_jobs import register_trained

        register_trained(context, outcome)  # the model registry's version of it

    def error_of(self, exc: BaseException) -> dict[str, Any]:
        return job_error(exc)


def job_error(exc: BaseException) -> dict[str, Any]:
    """A training job's ``error {code, message, param}`` (OpenAI's codes where they exist)."""
    code = getattr(exc, "code", None)
    if code:
        return {"code": code, "message": str(getattr(exc, "message", exc)), "param": getattr(exc, "param", None)}
    if isinstance(exc, DataError):
        return {"code": "invalid_training_file", "message": str(exc), "param": "training_file"}
    if isinstance(exc, ConfigError):
        return {"code": "invalid_config", "message": str(exc), "param": exc.field}
    if isinstance(exc, NotFoundError):
        return {"code": "model_not_found", "message": str(exc), "param": "model"}
    if isinstance(exc, TuneforgeError):
        return {"code": "training_error", "message": str(exc), "param": None}
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "param": None}


def pause_callback(pause: threading.Event, *, check: Callable[[], None] | None = None) -> TrainerCallback:
    """A TrainerCallback: when ``pause`` is set, save a checkpoint at the end of the step, then stop.

    ``check`` runs at the end of every step, before the Trainer logs or saves it (the job's lease check).
    """
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    class PauseControl(TrainerCallback):
        def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                        **kwargs: Any) -> TrainerControl:
            if check is not None:
                check()
            if pause.is_set():
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> TrainerControl:
            if pause.is_set():
                raise JobPaused()
            return control

    return PauseControl()


def metrics_csv(metrics_file: Path) -> str:
    """OpenAI's result file: one row per logged step (step, train_loss, valid_loss, learning_rate, ...)."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line] if metrics_file.is_file() else []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["step", "epoch", "train_loss", "valid_loss", "learning_rate", "tokens_per_second"])
    for row in rows:
        writer.writerow([row.get("step"), row.get("epoch"), row.get("loss", ""), row.get("eval_loss", ""),
                         row.get("learning_rate", ""), row.get("tokens_per_second", "")])
    return out.getvalue()


class EvaluateKind(JobKind):
    """An evaluation job: the ``tuneforge eval`` request (a model and a suite), its report kept as a file."""

    name, title, id_prefix = "evaluate", "Evaluation job", "evaljob"

    def run(self, context: JobContext) -> JobOutcome:
        from tuneforge.services.evaluation import evaluate

        job = context.job
        context.recorder.message(f"Evaluation job started (attempt {job.attempts})")
        report = evaluate(job.config["model"], job.config["suite"], settings=context.settings, store=False,
                          progress=context.recorder)
        text = report.model_dump_json(indent=2).encode()
        record = store_result_file(context, filename="evaluation_report.json", data=text, purpose="evaluation-results")
        figures = {t.name: {"examples": t.examples, **t.metrics} for t in report.tasks}
        return JobOutcome(result={"tasks": figures, "seconds": report.seconds, "report_file": record.id},
                          result_files=[record.id])

    def on_succeeded(self, context: JobContext, outcome: JobOutcome) -> None:
        from tuneforge.services.registry_jobs import attach_job_scores

        attach_job_scores(context, outcome)  # when the model was a registered version


class CompressKind(JobKind):
    """A compression job: a recipe run on a model; the compressed model stays in the job's folder."""

    name, title, id_prefix = "compress", "Compression job", "cmpjob"

    def run(self, context: JobContext) -> JobOutcome:
        from tuneforge.services.compression import compress_model

        job = context.job
        context.recorder.message(f"Compression job started (attempt {job.attempts})")
        output = context.run_dir / "output"
        report = compress_model(job.config["model"], job.config["recipe"], output=output, overwrite=True,
                                settings=context.settings, progress=context.recorder)
        text = report.model_dump_json(indent=2).encode()
        record = store_result_file(context, filename="compression_report.json", data=text,
                                   purpose="compression-results")
        return JobOutcome(result={"summary": report.summary, "output": report.output, "seconds": report.seconds,
                                  "report_file": record.id}, result_files=[record.id])

    def on_succeeded(self, context: JobContext, outcome: JobOutcome) -> None:
        from tuneforge.services.registry_jobs import register_compression

        register_compression(context, outcome)  # linked to the input's version, when it was one


KINDS = JobKinds(TrainKind(), EvaluateKind(), CompressKind())
KINDS.register(HpoTrialKind())  # hyperparameter search: one trial of a stored study (services.hpo_kind)
KINDS.register(ServeUpdateKind())  # incremental updates: one update cycle (services.update_kind)
