"""Job kinds: what a job of each kind does. ``jobs/`` runs kinds; ``services`` defines and registers them.

A kind is a small object (see :class:`JobKind`): the job process hands it a :class:`JobContext` and records
the :class:`JobOutcome` it returns, or the error it raises. The queue, the claims, the heartbeats and the
job process are the same for every kind; nothing here knows what training or evaluation is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import NotFoundError, TuneforgeError
from tuneforge.storage.records import JobRecord

if TYPE_CHECKING:
    from tuneforge.jobs.recorder import JobRecorder
    from tuneforge.settings import Settings
    from tuneforge.storage.base import Store


class JobPaused(Exception):
    """Raised by a kind's :meth:`JobKind.run` once it has saved what a resume continues from."""


@dataclass(frozen=True)
class JobContext:
    """What a running job gets from the job process.

    Attributes:
        job: The job's record as the worker claimed it.
        store: The job process's own store connection.
        settings: The platform's settings.
        recorder: Progress callback: events, step metrics, progress, checkpoints to the store.
        pause: Set when the job is asked to pause (only kinds with ``pausable`` look at it).
        worker_id: The worker that holds the job.
        devices: The GPUs the worker handed the job (``worker --gpus``; already its ``CUDA_VISIBLE_DEVICES``);
            empty when the worker does not hand out GPUs.
    """

    job: JobRecord
    store: Store
    settings: Settings
    recorder: JobRecorder
    pause: threading.Event
    worker_id: str
    devices: tuple[str, ...] = ()

    def check_lease(self) -> None:
        """Stop (LeaseLost, or the job process ends) when this attempt no longer holds the job: kinds call it
        before they write files of the run directory (a training step's log and checkpoint)."""
        hold = getattr(self.store, "hold", None)  # a LeasedStore in a job process (jobs.lease)
        if hold is not None:
            hold()

    @property
    def run_dir(self) -> Path:
        """The folder the job writes its outputs to."""
        return self.settings.run_dir(self.job.id)


@dataclass(frozen=True)
class JobOutcome:
    """What a job produced.

    Attributes:
        result: The figures of the job (an evaluation's metrics, a compression's sizes, a training summary).
        result_files: Ids of the files the job stored (reports, metrics tables).
        fine_tuned_model: Name of the model the job made, registered by :meth:`JobKind.on_succeeded`.
        trained_tokens: Tokens trained on (training jobs).
        progress: Final progress fields.
    """

    result: dict[str, Any] | None = None
    result_files: list[str] = field(default_factory=list)
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)


class JobKind:
    """Base of the job kinds. Subclasses set the class attributes and implement :meth:`run`.

    Attributes:
        name: Stored in the job's ``kind`` column (``train``, ``evaluate``, ``compress``).
        title: How events name the job ("Fine-tuning job").
        id_prefix: Prefix of the job ids (``ftjob``).
        pausable: Whether a running job can pause (checkpoint, release its worker, resume later).
    """

    name: str = ""
    title: str = "Job"
    id_prefix: str = "job"
    pausable: bool = False

    def run(self, context: JobContext) -> JobOutcome:
        """Do the job in the job process; raise :class:`JobPaused` after a pause was honoured."""
        raise NotImplementedError

    def devices_needed(self, job: JobRecord) -> int:
        """GPUs the job asks of a worker that hands them out (``worker --gpus``): one, unless the kind says more."""
        return 1

    def on_succeeded(self, context: JobContext, outcome: JobOutcome) -> None:
        """After the job was marked succeeded (e.g. register the model it made)."""

    def error_of(self, exc: BaseException) -> dict[str, Any]:
        """The job's ``error {code, message, param}`` for an exception it raised."""
        code = getattr(exc, "code", None)
        if code:
            return {"code": code, "message": str(getattr(exc, "message", exc)), "param": getattr(exc, "param", None)}
        if isinstance(exc, TuneforgeError):
            return {"code": f"{self.name}_error", "message": str(exc), "param": getattr(exc, "field", None)}
        return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}", "param": None}


class JobKinds:
    """The kinds a worker can run, by name (built and filled by ``services``)."""

    def __init__(self, *kinds: JobKind) -> None:
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> JobKind:
        """Add ``kind``; a second kind of the same name is an error."""
        if not kind.name or kind.name in self._kinds:
            raise ValueError(f"job kind name {kind.name!r} is empty or registered twice")
        self._kinds[kind.name] = kind
        return kind

    def get(self, name: str) -> JobKind:
        """The kind called ``name``; raises NotFoundError."""
        if name not in self._kinds:
            raise NotFoundError(f"no job kind '{name}'", hint=f"known kinds: {', '.join(self._kinds)}")
        return self._kinds[name]

    def names(self) -> list[str]:
        """Names of the registered kinds."""
        return list(self._kinds)

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())
