"""Trainer callbacks: progress events for the CLI / job runner, ``metrics.jsonl``, and stop requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind

if TYPE_CHECKING:
    import threading

    from transformers import TrainerControl, TrainerState, TrainingArguments


class ProgressReporter(TrainerCallback):
    """Reports each step (loss, tokens/s, ETA) and appends logged metrics to ``metrics.jsonl`` (None: write no file,
    as on the processes other than rank 0). ``fence`` runs right before each append (a platform job's lease check:
    the store writes of ``progress`` are fenced in their transactions, and a process frozen after one of them must
    not append a row that the attempt which took the job over has written already)."""

    def __init__(self, progress: ProgressCallback, metrics_file: Path | None, *,
                 fence: Callable[[], None] | None = None) -> None:
        self.progress = progress
        self.metrics_file = metrics_file
        self.fence = fence
        self.last_loss: float | None = None
        self.last_eval: tuple[int, float] | None = None  # (step, eval loss) of the newest evaluation
        self._last_lr: float | None = None
        self._start_time = 0.0
        self._start_step = 0
        self._start_tokens = 0
        self._last_time = 0.0
        self._last_tokens = 0
        self._pending: ProgressEvent | None = None  # a logging step's event, sent once its loss is logged

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._start_time = self._last_time = time.perf_counter()
        self._start_step = state.global_step  # > 0 when resuming
        self._start_tokens = self._last_tokens = state.num_input_tokens_seen
        if self.metrics_file is not None:
            _drop_lines_after(self.metrics_file, state.global_step)  # a resumed run rewrites later steps
        self.progress(ProgressEvent(ProgressKind.STAGE, "training", step=state.global_step, total=state.max_steps))

    def tokens_per_second(self, state: TrainerState) -> float:
        """Tokens per second since this process started training."""
        elapsed = time.perf_counter() - self._start_time
        return (state.num_input_tokens_seen - self._start_tokens) / elapsed if elapsed > 0 else 0.0

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush()
        done = state.global_step - self._start_step
        elapsed = time.perf_counter() - self._start_time
        eta = elapsed / done * (state.max_steps - state.global_step) if done else None
        data = {"tokens_per_second": self.tokens_per_second(state), "eta_seconds": eta, "epoch": state.epoch}
        event = ProgressEvent(ProgressKind.STEP, step=state.global_step, total=state.max_steps, data=data)
        if state.global_step >= state.max_steps:  # the last step logs its own loss (not the last logging step's)
            control.should_log = True
        if control.should_log:  # the Trainer logs this step's loss right after: report the step with it
            self._pending = event
        else:
            self._send(event)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush()

    def _flush(self, *, logged: bool = False) -> None:
        if self._pending is not None:
            event, self._pending = self._pending, None
            if logged:
                event.data["logged"] = True  # carries the loss logged at this very step
            self._send(event)

    def _send(self, event: ProgressEvent) -> None:
        if self.last_loss is not None:
            event.data["loss"] = self.last_loss
        if self._last_lr is not None:
            event.data["learning_rate"] = self._last_lr
        self.progress(event)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = logs or {}
        now = time.perf_counter()
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
            row["loss"] = self.last_loss
            row["learning_rate"] = float(logs.get("learning_rate", 0.0))
            seconds = now - self._last_time
            tokens = state.num_input_tokens_seen - self._last_tokens
            row["tokens_per_second"] = round(tokens / seconds, 2) if seconds > 0 else None
            row["input_tokens"] = int(state.num_input_tokens_seen)  # every process's, since the run began
            self._last_time, self._last_tokens = now, state.num_input_tokens_seen
            self._last_lr = row["learning_rate"]
            self._flush(logged=True)
        if "eval_loss" in logs:
            row["eval_loss"] = float(logs["eval_loss"])
            self.last_eval = (state.global_step, row["eval_loss"])
            self.progress(ProgressEvent(ProgressKind.METRICS, step=state.global_step, data={"eval_loss": row["eval_loss"]}))
        if len(row) > 2 and self.metrics_file is not None:
            if self.fence is not None:
                self.fence()
            with self.metrics_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")


class StopOnRequest(TrainerCallback):
    """Ends training at the end of the step during which ``stop`` was set, with a checkpoint of that step.

    Attributes:
        stopped_at: The step after which training was stopped, or None while it runs on.
    """

    def __init__(self, stop: threading.Event, *, agree: Callable[[bool], bool] | None = None) -> None:
        self.stop = stop
        self.agree = agree  # several processes: whether any of them was asked to stop (every step, on all)
        self.stopped_at: int | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        requested = self.stop.is_set() if self.agree is None else self.agree(self.stop.is_set())
        if requested and self.stopped_at is None and state.global_step < state.max_steps:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


def _drop_lines_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))
