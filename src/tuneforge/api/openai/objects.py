"""Records as OpenAI's JSON objects (the fields the official SDK reads), plus additive tuneforge fields."""

from __future__ import annotations

from typing import Any

from tuneforge.storage.records import CheckpointRecord, EventRecord, FileRecord, JobRecord, JobStatus, Page

AUTO_HYPERPARAMETERS = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}


def _ts(value: float | None) -> int | None:
    return int(value) if value is not None else None


def job_object(job: JobRecord, *, queue_position: int | None = None) -> dict[str, Any]:
    """A ``fine_tuning.job``."""
    request = job.request or {}
    config = job.config or {}
    return {
        "object": "fine_tuning.job",
        "id": job.id,
        "model": job.model,
        "created_at": _ts(job.created_at),
        "finished_at": _ts(job.finished_at),
        "fine_tuned_model": job.fine_tuned_model,
        "organization_id": job.project,
        "result_files": job.result_files,
        "status": job.status.value,
        "validation_file": job.validation_file,
        "training_file": job.training_file,
        "hyperparameters": request.get("hyperparameters") or AUTO_HYPERPARAMETERS,
        "trained_tokens": job.trained_tokens,
        "error": job.error,
        "seed": job.seed,
        "estimated_finish": _estimated_finish(job),
        "integrations": [],
        "metadata": request.get("metadata"),
        "method": request.get("method") or {"type": "supervised"},
        "user_provided_suffix": request.get("suffix"),
        # tuneforge's additive fields
        "priority": job.priority,
        "queue_position": queue_position,
        "attempts": job.attempts,
        "progress": job.progress or None,
        "tuneforge": {"method": config.get("method"), "task": config.get("task"), "train": config.get("train")},
    }


def _estimated_finish(job: JobRecord) -> int | None:
    eta = (job.progress or {}).get("eta_seconds")
    updated = (job.progress or {}).get("updated_at")
    return int(updated + eta) if job.status is JobStatus.RUNNING and eta is not None and updated else None


def event_object(event: EventRecord) -> dict[str, Any]:
    """A ``fine_tuning.job.event``."""
    return {"object": "fine_tuning.job.event", "id": event.id, "created_at": _ts(event.created_at),
            "level": event.level, "message": event.message, "data": event.data or {}, "type": event.type}


def checkpoint_object(checkpoint: CheckpointRecord, job: JobRecord) -> dict[str, Any]:
    """A ``fine_tuning.job.checkpoint``."""
    name = (job.request or {}).get("fine_tuned_model_name") or job.id
    return {"object": "fine_tuning.job.checkpoint", "id": checkpoint.id, "created_at": _ts(checkpoint.created_at),
            "fine_tuned_model_checkpoint": f"{name}:ckpt-step-{checkpoint.step}", "fine_tuning_job_id": job.id,
            "metrics": {k: v for k, v in checkpoint.metrics.items() if v is not None},
            "step_number": checkpoint.step}


def file_object(record: FileRecord) -> dict[str, Any]:
    """A ``file``."""
    return {"object": "file", "id": record.id, "bytes": record.bytes, "created_at": _ts(record.created_at),
            "filename": record.filename, "purpose": record.purpose, "status": record.status,
            "status_details": record.status_details, "expires_at": None}


def model_object(model: dict[str, Any]) -> dict[str, Any]:
    """A ``model``."""
    return {"object": "model", "id": model["id"], "created": model["created"], "owned_by": model["owned_by"]}


def page(items: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """A cursor page: ``{"object": "list", "data": [...], "has_more": ...}`` (first and last ids too)."""
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}


def as_page(records: Page[Any], render: Any) -> dict[str, Any]:
    """Render a store page with ``render``."""
    return page([render(r) for r in records.data], has_more=records.has_more)
