"""What the Store holds: frozen records, the same whatever database is behind it.

Records are values: change a stored one through the Store (a job through :class:`JobUpdate`), and make a
changed copy with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Generic, TypeVar

from tuneforge.storage.record_base import from_mapping, new_id, now  # noqa: F401 - re-exported
from tuneforge.storage.registry_records import (  # noqa: F401 - re-exported: the registry's records
    AliasMoveRecord, ModelAliasRecord, ModelVersionRecord, RegisteredModelRecord, VersionStatus, rollback_target,
    split_of,
)

T = TypeVar("T")


class JobStatus(str, Enum):
    """A job's state. ``paused`` goes back to ``queued`` on resume; the last three are final."""

    VALIDATING = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # A state acts as its string: one dictionary key (counts.get("queued")), printed as "queued".
    __hash__ = str.__hash__
    __format__ = str.__format__

    def __str__(self) -> str:
        return self.value

    def is_final(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled) and will never run again."""
        return self in FINAL_STATES

    @classmethod
    def final(cls) -> tuple[JobStatus, ...]:
        """The final states."""
        return FINAL_STATES


FINAL_STATES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobControl(str, Enum):
    """What a job's worker is asked to do with a running job."""

    CANCEL = "cancel"
    PAUSE = "pause"

    __hash__ = str.__hash__
    __format__ = str.__format__

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing, newest first unless said otherwise; ``has_more`` is exact."""

    data: list[T]
    has_more: bool


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: its sha256, never the key. ``id`` (``key_`` and 16 hex digits of the hash) names it
    in listings and in revoke / rotate; a key works while it is neither disabled nor expired."""

    key_hash: str
    prefix: str
    project: str
    created_at: float = field(default_factory=now)
    expires_at: float | None = None
    disabled_at: float | None = None
    last_used_at: float | None = None
    is_admin: bool = False

    @property
    def id(self) -> str:
        """The key's public id."""
        return f"key_{self.key_hash[:16]}"

    def refusal(self, at: float) -> str | None:
        """Why the key does not work at ``at`` ("revoked", "expired"), or ``None`` when it works."""
        if self.disabled_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= at:
            return "expired"
        return None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class DatasetRecord:
    """A named dataset of the native API: a file with its detected format and statistics."""

    id: str
    project: str
    name: str
    file_id: str
    format: str | None = None
    examples: int | None = None
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class DataSetRecord:
    """A named, versioned data set of a project (``tuneforge data``); its content lives in its versions."""

    id: str
    project: str
    name: str
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class DataVersionRecord:
    """An immutable version of a data set: a JSONL artifact named by ``sha256`` (of its normalized records).

    ``version`` is numbered by the Store (1, 2, ...) per data set; ``parent_id`` is the version it was derived
    from (of this or another data set), ``operation`` how (import, clean, dedup, redact, filter, split,
    append, ...), ``params`` with what options, and ``details`` what it removed or added. ``stats`` holds
    the token statistics of its records.
    """

    id: str
    project: str
    name: str
    sha256: str
    format: str
    records: int
    operation: str
    version: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    parent_id: str | None = None
    dataset_id: str | None = None
    created_at: float = field(default_factory=now)

    @property
    def ref(self) -> str:
        """``NAME:VERSION``, the reference that resolves to this version."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class JobRecord:
    """A job of some ``kind`` (``train``, ``evaluate``, ``compress``, ...; the kinds are registered by services).

    ``config`` is the validated request the job runs (for ``train`` the TrainConfig as JSON); ``request``
    keeps what the shell that created it needs to show it again (OpenAI's hyperparameters, method, suffix,
    metadata); ``result`` is what a finished job produced, as the kind reports it (e.g. a report's figures).
    """

    id: str
    project: str
    model: str
    config: dict[str, Any]
    kind: str = "train"
    training_file: str | None = None
    validation_file: str | None = None
    status: JobStatus = JobStatus.VALIDATING
    priority: int = 0
    request: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    result_files: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    heartbeat_at: float | None = None
    attempts: int = 0
    control: JobControl | None = None  # asked of the worker that runs the job
    seq: int | None = None  # insertion order: the cursor behind ``after``

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", JobStatus(self.status))
        if self.control is not None:
            object.__setattr__(self, "control", JobControl(self.control))


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class MetricRecord:
    """Figures of one training step."""

    job_id: str
    step: int
    data: dict[str, Any]
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class CheckpointRecord:
    """A complete training checkpoint of a job (a folder under the job's run directory)."""

    id: str
    job_id: str
    step: int
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=now)
    seq: int | None = None


@dataclass(frozen=True)
class ModelRecord:
    """A fine-tuned model: the adapter or model folder a succeeded job wrote."""

    id: str
    project: str
    job_id: str
    base_model: str
    path: str
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class Lease:
    """Who may write for a running job: the job and the attempt number (the fencing token) its claim wrote.

    A write given a lease happens only while the job is still that attempt's (running, or succeeded by it),
    in the same transaction; otherwise it raises :class:`tuneforge.errors.LeaseLost` and writes nothing.
    """

    job_id: str
    attempt: int


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a JobUpdate field that is left as it is (``None`` clears a column)


@dataclass(frozen=True)
class JobUpdate:
    """The fields of a job that a status change or a progress report sets; the rest stay ``UNSET``."""

    status: JobStatus = UNSET
    error: dict[str, Any] | None = UNSET
    finished_at: float | None = UNSET
    control: JobControl | None = UNSET
    worker_id: str | None = UNSET
    fine_tuned_model: str | None = UNSET
    trained_tokens: int | None = UNSET
    result_files: list[str] = UNSET
    result: dict[str, Any] | None = UNSET
    progress: dict[str, Any] = UNSET
    request: dict[str, Any] = UNSET
    config: dict[str, Any] = UNSET

    def values(self) -> dict[str, Any]:
        """The set fields, as column values (enums as their strings)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not UNSET}
        return {k: v.value if isinstance(v, Enum) else v for k, v in out.items()}


@dataclass(frozen=True)
class ServedRequestRecord:
    """One request the inference server answered (the request log; the A/B report and ``data collect`` read it).

    Attributes:
        id: The response id (``chatcmpl-...``), which feedback names.
        model: The model name the client asked for (``bot@production``).
        name: The registered model behind it (``None`` for other names); ``alias`` the alias asked for.
        version: The registry version that answered; ``variant`` its label (``bot:8``) or the model name.
        user_id: OpenAI's ``user`` field (A/B assignment is sticky per user).
        prompt: The messages or prompt (only when the server runs with ``--log-requests``); ``answer`` the text.
    """

    id: str
    project: str
    model: str
    variant: str
    status: str = "ok"
    name: str | None = None
    alias: str | None = None
    version: int | None = None
    user_id: str | None = None
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt: Any = None
    answer: str | None = None
    created_at: float = field(default_factory=now)


@dataclass(frozen=True)
class FeedbackRecord:
    """A score a user gave a response: thumbs up (1.0) or down (0.0) or a number, with an optional correction."""

    request_id: str
    project: str
    score: float
    label: str | None = None  # up | down | None (a number)
    correction: str | None = None
    id: str = field(default_factory=lambda: new_id("fb"))
    created_at: float = field(default_factory=now)
