"""What a running job writes to the store: events, step metrics, progress and checkpoints.

:class:`JobRecorder` is a progress callback (``tuneforge.progress``): the same events the CLI draws as a
progress bar become the job's events and metrics here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuneforge.progress import ProgressEvent, ProgressKind
from tuneforge.storage.base import Store
from tuneforge.storage.records import (
    CheckpointRecord, EventRecord, JobStatus, JobUpdate, MetricRecord, new_id,
)
from tuneforge.storage.rundir import RunDir


class JobRecorder:
    """Progress callback of a job process.

    Args:
        store: The store (the job process's own connection).
        job_id: The job.
        run_dir: The job's run directory, scanned for new checkpoints after each step.
        title: How messages name the job ("Fine-tuning job").
        min_interval: Seconds between two step events (every step still gets a metrics row).
        attempt: The job's attempt this process runs, written into step events.
    """

    def __init__(self, store: Store, job_id: str, run_dir: Path, *, title: str = "Job",
                 min_interval: float = 1.0, attempt: int | None = None) -> None:
        self.store, self.job_id, self.run, self.title = store, job_id, RunDir(run_dir), title
        self.attempt = attempt  # kept in each step's event: which run of the job wrote it
        self.min_interval = min_interval
        self._last_event = 0.0
        self._seen_checkpoints: set[str] = set()
        self.last_loss: float | None = None
        self.progress: dict[str, Any] = {}

    def message(self, text: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """Add a message event."""
        self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=self.job_id, level=level, message=text, data=data))

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind is ProgressKind.MESSAGE and event.message:
            self.message(event.message)
        elif event.kind is ProgressKind.STAGE and event.message:
            self.message(f"{event.message[:1].upper()}{event.message[1:]}")
        elif event.kind is ProgressKind.DATASET:
            d = event.data
            trained = f" ({d['trained_tokens']} trained per epoch)" if d.get("trained_tokens") else ""
            self.message(f"Dataset: {d.get('examples')} examples, {d.get('tokens')} tokens{trained}", data=d)
        elif event.kind is ProgressKind.METRICS and "eval_loss" in event.data and event.step is not None:
            self._metrics(event.step, event.total, {"valid_loss": event.data["eval_loss"]})
        elif event.kind is ProgressKind.STEP and event.step is not None:
            if "loss" in event.data or "tokens_per_second" in event.data:
                self._step(event)
            else:  # a step of another long phase (generation, pruning): progress only
                self._set_progress(event.step, event.total, eta=event.data.get("eta_seconds"), phase=event.message)

    def _step(self, event: ProgressEvent) -> None:
        d = event.data
        self.last_loss = d.get("loss", self.last_loss)
        figures = {"train_loss": self.last_loss, "epoch": d.get("epoch"), "tokens_per_second": d.get("tokens_per_second")}
        self.store.add_metric(MetricRecord(job_id=self.job_id, step=event.step, data=figures))
        last = event.total is not None and event.step >= event.total
        if last or time.monotonic() - self._last_event >= self.min_interval:
            self._last_event = time.monotonic()
            self._metrics(event.step, event.total, figures, eta=d.get("eta_seconds"))
        self.scan_checkpoints()

    def _metrics(self, step: int, total: int | None, figures: dict[str, Any], *, eta: float | None = None) -> None:
        loss = figures.get("train_loss") if "train_loss" in figures else figures.get("valid_loss")
        name = "training loss" if "train_loss" in figures else "validation loss"
        text = f"Step {step}/{total}: {name}={loss:.4f}" if loss is not None else f"Step {step}/{total}"
        data = {"step": step, "total_steps": total, **{k: v for k, v in figures.items() if v is not None}}
        if self.attempt is not None:
            data["attempt"] = self.attempt
        self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=self.job_id, level="info", message=text,
                                         type="metrics", data=data))
        self._set_progress(step, total, eta=eta, train_loss=self.last_loss)

    def _set_progress(self, step: int, total: int | None, *, eta: float | None, **fields: Any) -> None:
        """Write the job's progress fields (step, total, ETA, ...) if the job is still running."""
        self.progress = {"step": step, "total_steps": total, "eta_seconds": eta, **fields}
        update = JobUpdate(progress={**self.progress, "updated_at": time.time()})
        self.store.update_job(self.job_id, update, from_states=(JobStatus.RUNNING,))

    def scan_checkpoints(self) -> list[CheckpointRecord]:
        """Record the run's complete checkpoints that the store does not know yet."""
        added: list[CheckpointRecord] = []
        for folder in self.run.complete_checkpoints():
            if folder.name in self._seen_checkpoints:
                continue
            self._seen_checkpoints.add(folder.name)
            step = RunDir.checkpoint_step(folder)
            record = CheckpointRecord(id=new_id("ftckpt"), job_id=self.job_id, step=step, path=str(folder),
                                      metrics={"step": step, "train_loss": self.last_loss})
            if self.store.add_checkpoint(record):
                self.message(f"Checkpoint saved at step {step}", data={"step": step, "checkpoint": record.id})
                added.append(record)
        return added
