"""What the web console shows of jobs: one job with its curves, events and checkpoints, and several runs side
by side (curves overlaid, a metric table, and the significance verdict of two evaluation jobs' reports)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tuneforge.errors import ConfigError, ConflictError
from tuneforge.services import jobs
from tuneforge.services.platform import Platform
from tuneforge.storage.records import JobRecord, JobStatus
from tuneforge.storage.rundir import RunDir

CURVES = ("loss", "eval_loss", "learning_rate", "tokens_per_second")
MAX_COMPARED = 8


def job_curves(platform: Platform, job: JobRecord) -> list[dict[str, Any]]:
    """Per-step figures of a training job, oldest first: ``step`` and any of :data:`CURVES`.

    The run's ``metrics.jsonl`` (written by the trainer on each log: loss, eval loss, learning rate, tokens/s)
    when the run directory is on this machine; else the figures the worker stored (loss and tokens/s).
    """
    path = RunDir(platform.settings.run_dir(job.id)).metrics
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [{"step": r["step"], **{k: r[k] for k in CURVES if r.get(k) is not None}} for r in rows]
    return [{"step": m.step, "loss": m.data.get("train_loss"), "tokens_per_second": m.data.get("tokens_per_second")}
            for m in platform.store.list_metrics(job.id)]


def job_detail(platform: Platform, job_id: str, *, project: str) -> dict[str, Any]:
    """A job as its console page shows it: the record, progress, curves, events (oldest first), checkpoints,
    and the report of a succeeded evaluation or compression job."""
    job = jobs.get_job(platform, job_id, project=project)
    events = jobs.list_events(platform, job.id, project=project, limit=500).data[::-1]
    checkpoints = jobs.list_checkpoints(platform, job.id, project=project, limit=100).data
    return {"job": asdict(job), "progress": jobs.job_progress(platform, job.id, project=project),
            "curves": job_curves(platform, job) if job.kind == "train" else [],
            "events": [asdict(e) for e in events], "checkpoints": [asdict(c) for c in checkpoints],
            "report": _report(platform, job, project=project)}


def _report(platform: Platform, job: JobRecord, *, project: str) -> dict[str, Any] | None:
    if job.status is not JobStatus.SUCCEEDED or not (job.result or {}).get("report_file"):
        return None
    return jobs.job_report(platform, job.id, project=project)


def compare_jobs(platform: Platform, job_ids: list[str], *, project: str) -> dict[str, Any]:
    """Runs side by side: each job's curves and final figures; with exactly two succeeded evaluation jobs
    among them, their comparison (paired bootstrap / McNemar verdict per metric, as ``tuneforge compare``).

    Raises:
        ConfigError: Fewer than two or more than :data:`MAX_COMPARED` jobs.
        NotFoundError: A job is not one of the project's.
    """
    if not 2 <= len(set(job_ids)) <= MAX_COMPARED:
        raise ConfigError(f"compare 2 to {MAX_COMPARED} different jobs, not {len(set(job_ids))}", field="job",
                          hint="tick two or more jobs on the jobs page")
    runs = [jobs.get_job(platform, job_id, project=project) for job_id in dict.fromkeys(job_ids)]
    rows = []
    for job in runs:
        curves = job_curves(platform, job) if job.kind == "train" else []
        rows.append({"id": job.id, "kind": job.kind, "model": job.model, "status": job.status.value,
                     "curves": curves, "final": _final(curves) if curves else _scores(job), "result": job.result})
    evaluations = [j for j in runs if j.kind == "evaluate" and j.status is JobStatus.SUCCEEDED]
    comparison = _significance(platform, evaluations, project=project) if len(evaluations) == 2 else None
    return {"runs": rows, "comparison": comparison}


def _final(curves: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each curve, and the best (lowest) eval loss."""
    final: dict[str, Any] = {}
    for row in curves:
        final.update({k: v for k, v in row.items() if v is not None})
    evals = [r["eval_loss"] for r in curves if r.get("eval_loss") is not None]
    return {**final, **({"best_eval_loss": min(evals)} if evals else {})}


def _scores(job: JobRecord) -> dict[str, Any]:
    """``task/metric: score`` of a finished evaluation job (its stored result)."""
    tasks = (job.result or {}).get("tasks", {}) if job.kind == "evaluate" else {}
    return {f"{task}/{metric}": value for task, figures in tasks.items() for metric, value in figures.items()
            if metric != "examples" and isinstance(value, (int, float))}


def _significance(platform: Platform, pair: list[JobRecord], *, project: str) -> dict[str, Any]:
    from tuneforge.evaluation.compare import compare_reports, on_shared_examples
    from tuneforge.evaluation.results import EvalReport

    try:
        a, b = (EvalReport.model_validate(jobs.job_report(platform, j.id, project=project)) for j in pair)
        result = compare_reports(*on_shared_examples(a, b))
    except (ConfigError, ConflictError) as error:  # other data: say why there is no verdict
        return {"jobs": [j.id for j in pair], "error": str(error)}
    return {"jobs": [j.id for j in pair], "models": [j.model for j in pair],
            **result.model_dump(mode="json", exclude={"a", "b"})}
