"""The Store contract: everything the platform keeps, whatever database holds it.

One implementation (:class:`tuneforge.storage.sql.SqlStore`) serves SQLite and PostgreSQL; the contract
tests in ``tests/contract`` run against both. Listings are newest first with an ``after`` cursor (the id
of the last item of the previous page) and an exact ``has_more``. ``project`` scopes what a caller may
see: a record of another project is not found.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from tuneforge.storage.records import (
    CheckpointRecord,
    DatasetRecord,
    EventRecord,
    FileRecord,
    JobRecord,
    MetricRecord,
    ModelRecord,
    Page,
)


class Store(ABC):
    """Persistent state of the platform."""

    # --- API keys -------------------------------------------------------------------------------
    @abstractmethod
    def add_api_key(self, *, project: str, key_hash: str, prefix: str) -> None:
        """Store the hash of a new key (the key itself is never stored)."""

    @abstractmethod
    def project_of_key(self, key_hash: str) -> str | None:
        """The project a key hash belongs to, or ``None``."""

    # --- files and datasets ---------------------------------------------------------------------
    @abstractmethod
    def add_file(self, record: FileRecord) -> FileRecord:
        """Insert a file record."""

    @abstractmethod
    def get_file(self, file_id: str, *, project: str | None = None) -> FileRecord:
        """A file; raises NotFoundError (also for another project's file)."""

    @abstractmethod
    def list_files(
        self, *, project: str, purpose: str | None = None, after: str | None = None, limit: int = 100,
        order: str = "desc",
    ) -> Page[FileRecord]:
        """Files of a project, by creation time (``order``: desc or asc)."""

    @abstractmethod
    def delete_file(self, file_id: str, *, project: str) -> FileRecord:
        """Remove a file record; raises NotFoundError."""

    @abstractmethod
    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        """Insert a dataset record."""

    @abstractmethod
    def get_dataset(self, dataset_id: str, *, project: str) -> DatasetRecord:
        """A dataset; raises NotFoundError."""

    @abstractmethod
    def list_datasets(self, *, project: str, after: str | None = None, limit: int = 100) -> Page[DatasetRecord]:
        """Datasets of a project, newest first."""

    @abstractmethod
    def update_dataset(self, dataset_id: str, **fields: Any) -> None:
        """Set fields of a dataset (format, examples)."""

    # --- jobs -----------------------------------------------------------------------------------
    @abstractmethod
    def add_job(self, record: JobRecord) -> JobRecord:
        """Insert a job; returns it with its ``seq``."""

    @abstractmethod
    def get_job(self, job_id: str, *, project: str | None = None) -> JobRecord:
        """A job; raises NotFoundError."""

    @abstractmethod
    def list_jobs(
        self, *, project: str | None, after: str | None = None, limit: int = 20, status: str | None = None
    ) -> Page[JobRecord]:
        """Jobs, newest first; ``project=None`` lists every project's."""

    @abstractmethod
    def delete_job(self, job_id: str, *, project: str) -> None:
        """Remove a finished job with its events, metrics and checkpoints."""

    @abstractmethod
    def transition(self, job_id: str, *, from_states: tuple[str, ...], held_by: str | None = None,
                   **fields: Any) -> bool:
        """Atomically set ``fields`` of a job if its status is one of ``from_states`` (and, when given, it
        is held by the worker ``held_by``). Returns whether the job was changed."""

    @abstractmethod
    def claim_job(self, *, worker_id: str) -> JobRecord | None:
        """Take the queued job of highest priority (oldest first) for ``worker_id``, marking it running.

        Two workers never get the same job: rows are locked with ``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL, and the status change is conditional on every database.
        """

    @abstractmethod
    def heartbeat(self, job_ids: list[str], *, worker_id: str) -> dict[str, str]:
        """Record that ``worker_id`` still runs these jobs. Returns the ones it still holds, each with its
        pending control request (``'cancel'``, ``'pause'`` or ``''``); a job missing from the answer was
        taken over by another worker."""

    @abstractmethod
    def requeue_stale(self, *, older_than: float) -> list[tuple[str, str]]:
        """Requeue running jobs whose last heartbeat is older than ``older_than`` (epoch seconds): their
        worker died. A pending pause or cancel is honoured instead (``paused`` / ``cancelled``).
        Returns ``(job_id, new_status)`` pairs."""

    @abstractmethod
    def queue_position(self, job_id: str) -> int | None:
        """1-based place of a queued job in the claim order, or ``None`` when it is not queued."""

    @abstractmethod
    def count_jobs(self) -> dict[str, int]:
        """Number of jobs per status (every project)."""

    @abstractmethod
    def job_durations(self) -> list[tuple[str, float]]:
        """``(status, seconds from start to end)`` of every finished job that started."""

    # --- events, metrics, checkpoints -------------------------------------------------------------
    @abstractmethod
    def add_event(self, record: EventRecord) -> None:
        """Append an event to a job."""

    @abstractmethod
    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]:
        """Events of a job, newest first."""

    @abstractmethod
    def add_metric(self, record: MetricRecord) -> None:
        """Append step figures to a job."""

    @abstractmethod
    def list_metrics(self, job_id: str) -> list[MetricRecord]:
        """Step figures of a job, by step."""

    @abstractmethod
    def add_checkpoint(self, record: CheckpointRecord) -> bool:
        """Record a checkpoint; returns False when the job already has one at that step."""

    @abstractmethod
    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]:
        """Checkpoints of a job, newest first."""

    @abstractmethod
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """A checkpoint; raises NotFoundError."""

    # --- fine-tuned models ------------------------------------------------------------------------
    @abstractmethod
    def add_model(self, record: ModelRecord) -> None:
        """Register a fine-tuned model."""

    @abstractmethod
    def get_model(self, model_id: str, *, project: str) -> ModelRecord:
        """A fine-tuned model; raises NotFoundError."""

    @abstractmethod
    def list_models(self, *, project: str) -> list[ModelRecord]:
        """Fine-tuned models of a project, oldest first."""

    @abstractmethod
    def delete_model(self, model_id: str, *, project: str) -> ModelRecord:
        """Remove a fine-tuned model record; raises NotFoundError."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
