"""The job process's view of the store: every write fenced by the lease (job id, attempt) its claim wrote.

Ownership of a running job is a lease with a fencing token. The claim increments the job's ``attempts``
(the token) and the worker's heartbeats keep the lease alive; a worker silent for ``stale_after_seconds``
loses it (``requeue_stale``) and the next claim writes a higher attempt. The job process holds
``Lease(job_id, attempt)`` and writes through :class:`LeasedStore`: events, metrics, checkpoints, result
files, status and model registration each run in one transaction with a conditional update of the job's
row (``WHERE attempts = :mine AND status = 'running'``), so a process frozen past ``--stale-after`` (a VM
pause, a long I/O stall) writes nothing once it resumes: its first write finds the lease lost and the
process exits at once (:data:`LEASE_LOST_EXIT`), before the Trainer's except-blocks or savers run.

The run directory is shared by the attempts (a resumed attempt continues from the newest checkpoint in it).
Its outputs are fenced by a lease check at the end of every training step, before the Trainer logs or saves
that step, another right before each ``metrics.jsonl`` row is appended (after the step's fenced store writes),
and a watchdog thread that checks the lease every heartbeat. A file write cannot be conditional the way a row
update is, so a process frozen between a check and its write still writes that one file once it resumes: at
most the remainder of the one step it was frozen in (the store, which the API reads, never).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tuneforge.errors import LeaseLost
from tuneforge.storage.base import Store
from tuneforge.storage.records import Lease

LEASE_LOST_EXIT = 4  # the exit code of a job process that found its lease lost
FENCED = frozenset({"add_event", "add_metric", "add_checkpoint", "update_job", "add_model", "add_file"})


def raise_lost(exc: LeaseLost) -> None:
    """The default reaction to a lost lease: raise it (tests, in-process runs)."""
    raise exc


def exit_lost(_exc: LeaseLost) -> None:
    """The job process's reaction to a lost lease: end now, running no handler that could write."""
    os._exit(LEASE_LOST_EXIT)


class LeasedStore:
    """A Store whose writes for the job happen only while ``lease`` holds it (reads pass through).

    Args:
        store: The job process's store.
        lease: The job and the attempt this process runs.
        on_lost: Called with the LeaseLost error a fenced write raised (default: raise it).
    """

    def __init__(self, store: Store, lease: Lease, *, on_lost: Callable[[LeaseLost], None] = raise_lost) -> None:
        self.store, self.lease, self.on_lost = store, lease, on_lost

    def hold(self) -> None:
        """Check that the lease still holds (the fence before writing files of the run directory)."""
        self._fenced(self.store.hold_lease, self.lease)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name not in FENCED:
            return attribute
        return lambda *args, **kwargs: self._fenced(attribute, *args, lease=self.lease, **kwargs)

    def _fenced(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except LeaseLost as exc:
            self.on_lost(exc)
            raise
