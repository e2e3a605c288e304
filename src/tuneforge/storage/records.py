"""What the Store holds: plain records, the same whatever database is behind it."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Job states. ``paused`` goes back to ``queued`` on resume; the last three are final.
VALIDATING = "validating_files"
QUEUED = "queued"
RUNNING = "running"
PAUSED = "paused"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
JOB_STATES = (VALIDATING, QUEUED, RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELLED)


def new_id(prefix: str) -> str:
    """A random public id such as ``ftjob-3f9a...`` (the prefixes follow OpenAI's)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> float:
    """Seconds since the epoch (all processes of a deployment share the clock of their machines)."""
    return time.time()


@dataclass
class Page(Generic[T]):
    """One page of a listing, newest first unless said otherwise; ``has_more`` is exact."""

    data: list[T]
    has_more: bool


@dataclass
class FileRecord:
    """An uploaded file; its bytes are an artifact under TUNEFORGE_HOME named by ``sha256``."""

    id: str
    project: str
    filename: str
    purpose: str
    bytes: int
    sha256: str
    created_at: float = field(default_factory=now)
    status: str = "processed"
    status_details: str | None = None


@dataclass
class DatasetRecord:
    """A named dataset of the native API: a file with its detected format and statistics."""

    id: str
    project: str
    name: str
    file_id: str
    format: str | None = None
    examples: int | None = None
    created_at: float = field(default_factory=now)


@dataclass
class JobRecord:
    """A fine-tuning job.

    ``config`` is the TrainConfig (as JSON) the job trains with; ``request`` keeps the OpenAI-style
    fields (hyperparameters, method, suffix, metadata) the job was created with.
    """

    id: str
    project: str
    model: str
    config: dict[str, Any]
    training_file: str | None = None
    validation_file: str | None = None
    status: str = VALIDATING
    priority: int = 0
    request: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    control: str | None = None  # 'cancel' or 'pause', asked of the worker that runs the job
    seq: int | None = None  # insertion order: the cursor behind ``after``


@dataclass
class EventRecord:
    """A job event: a message, or metrics of a step."""

    id: str
    job_id: str
    level: str
    message: str
    type: str = "message"
    data: dict[str, Any] | None = None
    created_at: float = field(default_factory=now)
    seq: int | None = None


@dataclass
class MetricRecord:
    """Figures of one training step."""

    job_id: str
    step: int
    data: dict[str, Any]
    created_at: float = field(default_factory=now)


@dataclass
class CheckpointRecord:
    """A complete training checkpoint of a job (a folder under the job's run directory)."""

    id: str
    job_id: str
    step: int
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    seq: int | None = None


@dataclass
class ModelRecord:
    """A fine-tuned model: the adapter or model folder a succeeded job wrote."""

    id: str
    project: str
    job_id: str
    base_model: str
    path: str
    created_at: float = field(default_factory=now)
