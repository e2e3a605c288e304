"""The Store contract: everything the platform keeps, whatever database holds it.

One implementation (:class:`tuneforge.storage.sql.SqlStore`) serves SQLite and PostgreSQL; the contract
tests in ``tests/contract`` run against both. Listings are newest first with an ``after`` cursor (the id
of the last item of the previous page) and an exact ``has_more``. ``project`` scopes what a caller may
see: a record of another project is not found.

Records come back frozen (change a job with :class:`JobUpdate`, a copy with ``dataclasses.replace``), job
states as :class:`JobStatus` and control requests as :class:`JobControl`. A database failure is a
:class:`tuneforge.errors.StorageError` whose hint says what to check; ``NotFoundError`` and the documented
results (``add_checkpoint`` returning False on a duplicate step) are the only other outcomes.

Thread and process rules: a Store object may be shared by the threads of one process (each call takes its
own connection from the pool and commits before it returns); each process opens its own Store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence

from tuneforge.storage.records import (
    ApiKeyRecord,
    CheckpointRecord,
    DatasetRecord,
    DataSetRecord,
    DataVersionRecord,
    EventRecord,
    FileRecord,
    JobControl,
    JobRecord,
    JobStatus,
    JobUpdate,
    Lease,
    MetricRecord,
    ModelRecord,
    Page,
)
from tuneforge.storage.records import (
    AliasMoveRecord, FeedbackRecord, ModelAliasRecord, ModelVersionRecord, RegisteredModelRecord, ServedRequestRecord,
)


class Store(ABC):
    """Persistent state of the platform."""

    # --- API keys -------------------------------------------------------------------------------
    @abstractmethod
    def add_api_key(self, *, project: str, key_hash: str, prefix: str, expires_at: float | None = None,
                    is_admin: bool = False) -> None:
        """Store the hash of a new key (the key itself is never stored)."""

    @abstractmethod
    def project_of_key(self, key_hash: str) -> str | None:
        """The project a key hash belongs to, or ``None``."""

    # --- API keys: listing, revocation, last use (hardening) -------------------------------------
    @abstractmethod
    def get_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash (also a revoked or expired one), or ``None``."""

    @abstractmethod
    def find_api_key(self, key_id: str) -> ApiKeyRecord:
        """The key whose :attr:`ApiKeyRecord.id` is ``key_id``; raises NotFoundError."""

    @abstractmethod
    def list_api_keys(self, *, project: str | None = None) -> list[ApiKeyRecord]:
        """Keys, oldest first, of one project or (``None``) of every project."""

    @abstractmethod
    def disable_api_key(self, key_hash: str, *, at: float) -> bool:
        """Revoke a key from ``at`` on; returns False when it was already revoked."""

    @abstractmethod
    def touch_api_key(self, key_hash: str, *, at: float) -> None:
        """Record that the key was used at ``at``."""

    # --- files and datasets ---------------------------------------------------------------------
    @abstractmethod
    def add_file(self, record: FileRecord, *, lease: Lease | None = None) -> FileRecord:
        """Insert a file record (under ``lease``: only while it holds, else LeaseLost)."""

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
    def update_dataset(self, dataset_id: str, *, format: str, examples: int) -> None:
        """Record a dataset's detected format and number of examples."""

    # --- versioned data sets (tuneforge data) ----------------------------------------------------
    @abstractmethod
    def add_data_version(self, record: DataVersionRecord) -> tuple[DataVersionRecord, bool]:
        """Add a version to the data set ``record.name`` of ``record.project`` (created with its first
        version), numbered one past the data set's newest (``record.version`` is ignored).

        Returns the stored record and True; or, when the data set already holds a version with the same
        ``sha256`` (the same content is never stored twice), that version and False, inserting nothing.
        """

    @abstractmethod
    def get_data_version(self, *, project: str, name: str, version: int | None = None) -> DataVersionRecord:
        """A version of a data set (``None``: the newest); raises NotFoundError."""

    @abstractmethod
    def get_data_version_by_id(self, version_id: str, *, project: str) -> DataVersionRecord:
        """A version by its id; raises NotFoundError."""

    @abstractmethod
    def list_data_versions(self, *, project: str, name: str) -> list[DataVersionRecord]:
        """The versions of a data set, oldest first; raises NotFoundError for an unknown data set."""

    @abstractmethod
    def list_data_sets(self, *, project: str) -> list[DataSetRecord]:
        """The data sets of a project, by name."""

    # --- disk: references, quota, garbage collection (hardening) ---------------------------------
    @abstractmethod
    def file_references(self, sha256: str) -> int:
        """How many file records (of any project) point at the artifact ``sha256``."""

    @abstractmethod
    def file_hashes(self) -> set[str]:
        """The sha256 of every file record: the artifacts in use."""

    @abstractmethod
    def project_file_bytes(self, project: str) -> int:
        """Bytes of the project's files (what its storage quota counts)."""

    @abstractmethod
    def present_ids(self, kind: str, ids: Collection[str]) -> set[str]:
        """Those of ``ids`` that have a record; ``kind``: ``jobs`` or ``datasets``."""

    # --- jobs -----------------------------------------------------------------------------------
    @abstractmethod
    def add_job(self, record: JobRecord) -> JobRecord:
        """Insert a job; returns a copy of it with its ``seq``."""

    @abstractmethod
    def get_job(self, job_id: str, *, project: str | None = None) -> JobRecord:
        """A job; raises NotFoundError (also for another project's job)."""

    @abstractmethod
    def list_jobs(
        self, *, project: str | None, after: str | None = None, limit: int = 20, status: JobStatus | None = None,
        kind: str | None = None,
    ) -> Page[JobRecord]:
        """Jobs, newest first, optionally of one status and one kind; ``project=None`` lists every project's."""

    @abstractmethod
    def delete_job(self, job_id: str, *, project: str) -> None:
        """Remove a job with its events, metrics and checkpoints; raises NotFoundError."""

    @abstractmethod
    def update_job(
        self, job_id: str, update: JobUpdate, *, from_states: Iterable[JobStatus], held_by: str | None = None,
        lease: Lease | None = None, cancel_pending: bool | None = None,
    ) -> bool:
        """Atomically set the fields of ``update`` if the job's status is one of ``from_states`` (and, when
        ``held_by`` is given, the job is held by that worker; when ``cancel_pending`` is given, a cancel is /
        is not pending in its ``control``). Returns whether the job was changed.

        Raises:
            LeaseLost: ``lease`` is given and no longer holds the job (nothing is written).
        """

    @abstractmethod
    def claim_job(self, *, worker_id: str, kinds: Collection[str] | None = None,
                  max_running_per_project: int = 0) -> JobRecord | None:
        """Take the queued job of highest priority among ``kinds`` (``None``: any kind) for ``worker_id``,
        marking it running. Returns ``None`` when no such job waits.

        Fair across projects: among jobs of equal priority, the project whose latest claim is oldest goes
        first (round-robin), then the oldest job; projects with ``max_running_per_project`` running jobs
        (0: no limit) wait.

        Two workers never get the same job: rows are locked with ``FOR UPDATE SKIP LOCKED`` on
        PostgreSQL, and the status change is conditional on every database.
        """

    @abstractmethod
    def heartbeat(self, job_ids: Iterable[str], *, worker_id: str) -> dict[str, JobControl | None]:
        """Record that ``worker_id`` still runs these jobs. Returns the ones it still holds, each with its
        pending control request (``None`` when there is none); a job missing from the answer was taken
        over by another worker or has ended."""

    @abstractmethod
    def requeue_stale(self, *, older_than: float) -> list[tuple[str, JobStatus]]:
        """Requeue running jobs whose last heartbeat is older than ``older_than`` (epoch seconds): their
        worker died. A pending pause or cancel is honoured instead (``paused`` / ``cancelled``).
        Returns ``(job_id, new_status)`` pairs."""

    @abstractmethod
    def hold_lease(self, lease: Lease) -> None:
        """Check that ``lease`` still holds its job (running, or succeeded by this attempt); raises LeaseLost."""

    @abstractmethod
    def queue_position(self, job_id: str, *, across_projects: bool = False) -> int | None:
        """1-based place of a queued job among its project's queued jobs (all kinds) in claim order, or
        ``None`` when it is not queued; ``across_projects`` counts every project's jobs ahead (admin)."""

    @abstractmethod
    def count_jobs(self, *, project: str | None = None) -> dict[JobStatus, int]:
        """Number of jobs per status of one project or (``None``) every project; statuses without jobs are absent."""

    @abstractmethod
    def job_durations(self, *, project: str | None = None) -> list[tuple[JobStatus, float]]:
        """``(status, seconds from start to end)`` of every finished job that started (of one project)."""

    # --- events, metrics, checkpoints -------------------------------------------------------------
    @abstractmethod
    def add_event(self, record: EventRecord, *, lease: Lease | None = None) -> None:
        """Append an event to a job (under ``lease``: only while it holds, else LeaseLost)."""

    @abstractmethod
    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]:
        """Events of a job, newest first."""

    @abstractmethod
    def count_alerts(self, *, project: str | None = None) -> dict[str, int]:
        """Alert events (``type == 'alert'``) per alert kind (their ``data['kind']``): of ``project``'s jobs, or
        of every project (``None``)."""

    @abstractmethod
    def add_metric(self, record: MetricRecord, *, lease: Lease | None = None) -> None:
        """Record step figures of a job. Rows of this step and later ones are replaced: a step re-run after
        a resume keeps its last figures, once. Under ``lease``: only while it holds, else LeaseLost."""

    @abstractmethod
    def list_metrics(self, job_id: str) -> list[MetricRecord]:
        """Step figures of a job, by step."""

    @abstractmethod
    def add_checkpoint(self, record: CheckpointRecord, *, lease: Lease | None = None) -> bool:
        """Record a checkpoint; returns False when the job already has one at that step (also when a
        concurrent writer inserted it first). Under ``lease``: only while it holds, else LeaseLost."""

    @abstractmethod
    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]:
        """Checkpoints of a job, newest first."""

    @abstractmethod
    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        """A checkpoint; raises NotFoundError."""

    # --- fine-tuned models ------------------------------------------------------------------------
    @abstractmethod
    def add_model(self, record: ModelRecord, *, lease: Lease | None = None) -> None:
        """Register a fine-tuned model (under ``lease``: only while it holds, else LeaseLost)."""

    @abstractmethod
    def get_model(self, model_id: str, *, project: str) -> ModelRecord:
        """A fine-tuned model; raises NotFoundError."""

    @abstractmethod
    def list_models(self, *, project: str) -> list[ModelRecord]:
        """Fine-tuned models of a project, oldest first."""

    @abstractmethod
    def delete_model(self, model_id: str, *, project: str) -> ModelRecord:
        """Remove a fine-tuned model record; raises NotFoundError."""

    # --- the model registry -----------------------------------------------------------------------
    @abstractmethod
    def add_model_version(self, record: ModelVersionRecord) -> ModelVersionRecord:
        """Add a version of ``record.name`` (registering the name on first use); returns it with its number,
        one more than the model's newest (``record.version`` is ignored). Concurrent adds get distinct numbers."""

    @abstractmethod
    def get_model_version(self, *, project: str, name: str, version: int) -> ModelVersionRecord:
        """One version; raises NotFoundError."""

    @abstractmethod
    def list_model_versions(
        self, *, project: str | None, name: str | None = None, dataset_sha256: str | None = None,
        artifact_sha256: str | None = None, job_id: str | None = None, fine_tuned_model: str | None = None,
    ) -> list[ModelVersionRecord]:
        """Versions matching every filter given, by name then version; ``project=None``: every project's."""

    @abstractmethod
    def get_registered_model(self, *, project: str, name: str) -> RegisteredModelRecord:
        """A registered model; raises NotFoundError."""

    @abstractmethod
    def list_registered_models(self, *, project: str) -> list[RegisteredModelRecord]:
        """Registered models of a project, by name."""

    @abstractmethod
    def update_model_version(
        self, *, project: str, name: str, version: int, scores: dict | None = None, pruned_at: float | None = None,
    ) -> ModelVersionRecord:
        """Merge ``scores`` into the version's scores (new keys added, same keys replaced) and/or mark it
        pruned at ``pruned_at``, in one transaction; returns the updated version.

        Raises:
            NotFoundError: No such version.
            ConflictError: Pruning a version an alias points at (checked under the model's lock).
        """

    @abstractmethod
    def move_model_alias(
        self, *, project: str, name: str, alias: str, version: int | None, actor: str,
    ) -> AliasMoveRecord:
        """Point ``alias`` at ``version`` (``None`` deletes the alias) and record the move, in one transaction
        that holds the model's lock: concurrent moves are recorded one after another, each ``from`` the
        previous ``to``.

        Raises:
            NotFoundError: Unknown model or version, or deleting an alias that does not exist.
            ConflictError: The version was pruned.
        """

    @abstractmethod
    def rollback_model_alias(self, *, project: str, name: str, alias: str, actor: str) -> AliasMoveRecord:
        """Move ``alias`` back to where it pointed before its last move not yet rolled back (see
        :func:`tuneforge.storage.records.rollback_target`), in one transaction under the model's lock.

        Raises:
            NotFoundError: Unknown model or alias.
            ConflictError: Nothing to go back to, or that version was pruned.
        """

    @abstractmethod
    def list_model_aliases(self, *, project: str, name: str | None = None) -> list[ModelAliasRecord]:
        """Aliases of a project (or of one model), by model then alias."""

    @abstractmethod
    def list_alias_moves(self, *, project: str, name: str, alias: str | None = None) -> list[AliasMoveRecord]:
        """Every recorded move of a model's aliases (or of one alias), oldest first."""

    @abstractmethod
    def split_model_alias(self, *, project: str, name: str, alias: str, weights: dict[int, float],
                          actor: str) -> AliasMoveRecord:
        """Point ``alias`` at several versions by weight (an A/B split; the heaviest is its ``version``, the
        control) and record the move (action ``split``), under the model's lock. A later plain move ends it.

        Raises:
            NotFoundError: Unknown model or version.
            ConflictError: A version was pruned.
        """

    # --- served traffic ---------------------------------------------------------------------------
    @abstractmethod
    def add_served_requests(self, records: Sequence[ServedRequestRecord]) -> None:
        """Append requests to the request log, in one transaction."""

    @abstractmethod
    def get_served_request(self, request_id: str, *, project: str) -> ServedRequestRecord:
        """A logged request of ``project``; raises NotFoundError (also for another project's)."""

    @abstractmethod
    def list_served_requests(self, *, project: str, name: str | None = None, alias: str | None = None,
                             model: str | None = None, since: float | None = None) -> list[ServedRequestRecord]:
        """Logged requests matching every filter given (``since``: created at or after), oldest first."""

    @abstractmethod
    def add_feedback(self, record: FeedbackRecord) -> FeedbackRecord:
        """Record feedback on a logged request of ``record.project``; raises NotFoundError for an unknown one."""

    @abstractmethod
    def list_feedback(self, *, project: str, name: str | None = None, model: str | None = None,
                      since: float | None = None) -> list[FeedbackRecord]:
        """Feedback on the logged requests that match the filters, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
