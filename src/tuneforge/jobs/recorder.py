"""What a running job writes to the store: events, step metrics, progress and checkpoints.

:class:`JobRecorder` is a progress callback (``tuneforge.progress``): the same events the CLI draws as a
progress bar become the job's events and metrics here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuneforge.progress import ProgressEvent
from tuneforge.storage.base import Store
from tuneforge.storage.records import CheckpointRecord, EventRecord, MetricRecord, new_id
from tuneforge.training.rundir import RunDir


class JobRecorder:
    """Progress callback of a job process.

    Args:
        store: The store (the job process's own connection).
        job_id: The job.
        run_dir: The job's run directory, scanned for new checkpoints after each step.
        min_interval: Seconds between two step events (every step still gets a metrics row).
    """

    def __init__(self, store: Store, job_id: str, run_dir: Path, *, min_interval: float = 1.0) -> None:
        self.store, self.job_id, self.run = store, job_id, RunDir(run_dir)
        self.min_interval = min_interval
        self._last_event = 0.0
        self._seen_checkpoints: set[str] = set()
        self.last_loss: float | None = None

    def message(self, text: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        """Add a message event."""
        self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=self.job_id, level=level, message=text, data=data))

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind in ("stage", "message") and event.message:
            self.message(event.message if event.kind == "message" else f"{event.message[:1].upper()}{event.message[1:]}")
        elif event.kind == "metrics" and event.message == "dataset":
            d = event.data
            self.message(f"Dataset: {d.get('examples')} examples, {d.get('tokens')} tokens "
                         f"({d.get('trained_tokens')} trained)", data=d)
        elif event.kind == "metrics" and "eval_loss" in event.data and event.step is not None:
            self._metrics(event.step, event.total, {"valid_loss": event.data["eval_loss"]})
        elif event.kind == "step" and event.step is not None:
            self._step(event)

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
        self.store.add_event(EventRecord(id=new_id("ftevent"), job_id=self.job_id, level="info", message=text,
                                         type="metrics", data=data))
        progress = {"step": step, "total_steps": total, "train_loss": self.last_loss, "eta_seconds": eta,
                    "updated_at": time.time()}
        self.store.transition(self.job_id, from_states=("running",), progress=progress)

    def scan_checkpoints(self) -> list[CheckpointRecord]:
        """Record the run's complete checkpoints that the store does not know yet."""
        added = []
        if not self.run.checkpoints.is_dir():
            return added
        for folder in self.run.checkpoints.glob("checkpoint-*"):
            if folder.name in self._seen_checkpoints or not (folder / "trainer_state.json").is_file():
                continue
            self._seen_checkpoints.add(folder.name)
            step = int(folder.name.rsplit("-", 1)[1])
            record = CheckpointRecord(id=new_id("ftckpt"), job_id=self.job_id, step=step, path=str(folder),
                                      metrics={"step": step, "train_loss": self.last_loss})
            if self.store.add_checkpoint(record):
                self.message(f"Checkpoint saved at step {step}", data={"step": step, "checkpoint": record.id})
                added.append(record)
        return added
