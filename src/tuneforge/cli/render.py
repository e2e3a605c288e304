"""Draw progress events and results with rich: bars on a terminal, plain log lines when piped."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tuneforge.progress import ProgressEvent, ProgressKind

PIPED_WIDTH = 200  # off a terminal rich assumes 80 columns, which cuts tables; a log file has no such limit
PLAIN_INTERVAL = 10.0  # off a terminal, a phase without logged losses prints a line at most this often ...
PLAIN_FRACTION = 0.1  # ... or each time this much more of it is done


def make_console(**kwargs: Any) -> Console:
    """A rich console; when output goes to a file or pipe, one wide enough not to cut tables.

    Args:
        **kwargs: Passed to ``rich.console.Console`` (``stderr=True``, ...).
    """
    console = Console(**kwargs)
    if not console.is_terminal and "COLUMNS" not in os.environ and "width" not in kwargs:
        return Console(width=PIPED_WIDTH, **kwargs)
    return console


@dataclass
class _Phase:
    """What plain mode remembers of one phase: when and where it started, and its last printed line."""

    started: float
    start_step: int
    printed_step: int
    printed_at: float


class ProgressRenderer:
    """A progress callback that draws a bar per phase (step, loss, tokens/s, ETA) and prints stages.

    Off a terminal (``tuneforge train cfg.yaml > log``) a bar prints nothing until it ends, so it prints
    plain lines instead: one per logged training step (``logging_steps``) with loss, learning rate,
    tokens/s and ETA, and for other phases (evaluation, pruning) one every 10 % or 10 seconds.

    Args:
        console: Where to draw.
        plain: Print log lines instead of bars; by default when the console is not a terminal.
    """

    def __init__(self, console: Console, *, plain: bool | None = None) -> None:
        self.console = console
        self.plain = not console.is_terminal if plain is None else plain
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.phases: dict[str, _Phase] = {}

    def __enter__(self) -> ProgressRenderer:
        if not self.plain:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.plain:
            self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        match event.kind:
            case ProgressKind.STAGE if event.message != "training":
                self.console.print(f"[cyan]•[/] {event.message}")
            case ProgressKind.MESSAGE:
                self.console.print(f"  {event.message}")
            case ProgressKind.DATASET:
                self.console.print(f"  {dataset_line(event.data)}", highlight=False, markup=False)
            case ProgressKind.METRICS if "eval_loss" in event.data and event.step is not None:
                self.console.print(f"  step {event.step}: eval loss {event.data['eval_loss']:.4f}")
            case ProgressKind.STEP | ProgressKind.STAGE if event.total and self.plain:
                self._plain_line(event)
            case ProgressKind.STEP | ProgressKind.STAGE if event.total:
                self._advance(event)
            case _:  # a summary is drawn by the command itself (summary_table)
                pass

    def _advance(self, event: ProgressEvent) -> None:
        name = _phase_name(event)
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=event.total, info="")
        self.progress.update(self.tasks[name], completed=event.step or 0, total=event.total,
                             info="  ".join(_figures(event.data)))

    def _plain_line(self, event: ProgressEvent) -> None:
        name, step, now = _phase_name(event), event.step or 0, time.monotonic()
        phase = self.phases.get(name)
        if phase is None:
            self.phases[name] = _Phase(started=now, start_step=step, printed_step=step, printed_at=now)
            if event.kind is ProgressKind.STAGE:  # training starts: say how long it is
                start = f" from step {step}" if step else ""
                self.console.print(f"[cyan]•[/] {name}: {event.total} steps{start}")
                return
            phase = self.phases[name]
        elif not _due(event, phase, now):
            return
        phase.printed_step, phase.printed_at = step, now
        eta = event.data.get("eta_seconds")
        if eta is None and step > phase.start_step:
            eta = (now - phase.started) / (step - phase.start_step) * (event.total - step)
        label = "step" if name == "train" else name
        # A loss is the one logged at this step; between logging steps a line carries speed and ETA only.
        stale = "tokens_per_second" in event.data and not event.data.get("logged")
        figures = _figures({k: v for k, v in event.data.items() if not (stale and k in ("loss", "learning_rate"))},
                           lr=True)
        parts = [f"{label} {step}/{event.total}", *figures]
        if eta is not None and step < event.total:
            parts.append(f"eta {format_seconds(eta)}")
        self.console.print("  ".join(parts), highlight=False, markup=False)


def _phase_name(event: ProgressEvent) -> str:
    return "train" if event.kind is ProgressKind.STAGE or not event.message else event.message


def _due(event: ProgressEvent, phase: _Phase, now: float) -> bool:
    """Whether plain mode prints this step: a logged training step, the last step, or 10 % / 10 s later."""
    if event.data.get("logged") or (event.step or 0) >= (event.total or 0):
        return True
    if "tokens_per_second" in event.data:  # a training step: lines come at logging_steps; this keeps a sparse
        return now - phase.printed_at >= PLAIN_INTERVAL * 3  # log (large logging_steps) alive
    enough = (event.step or 0) - phase.printed_step >= PLAIN_FRACTION * (event.total or 0)
    return enough or now - phase.printed_at >= PLAIN_INTERVAL


def _figures(data: dict[str, Any], *, lr: bool = False) -> list[str]:
    parts = []
    if data.get("loss") is not None:
        parts.append(f"loss {data['loss']:.4f}")
    if lr and data.get("learning_rate") is not None:
        parts.append(f"lr {data['learning_rate']:.3g}")
    if data.get("tokens_per_second"):
        parts.append(f"{data['tokens_per_second']:.0f} tok/s")
    return parts


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` of a duration."""
    whole = int(max(seconds, 0))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def dataset_line(stats: dict[str, Any]) -> str:
    """The data line of a run: examples, tokens, tokens trained on per epoch (when the task has them), cuts."""
    trained = f", {stats['trained_tokens']} trained per epoch" if stats.get("trained_tokens") else ""
    return (f"data: {stats['examples']} examples ({stats['format']}), {stats['tokens']} tokens{trained}, "
            f"{stats['truncated']} truncated, {stats['dropped']} dropped")


SUMMARY_KEYS = ("method", "precision", "train_loss", "final_loss", "eval_loss", "global_step", "trained_tokens",
                "input_tokens", "tokens_per_second", "runtime_seconds", "peak_memory_mb", "trainable_parameters",
                "total_parameters")


def summary_table(summary: dict[str, Any]) -> Table:
    """The figures of a finished run; a figure the run does not have (no eval data: eval_loss) is left out."""
    table = Table(title="run summary", show_header=False)
    for key in SUMMARY_KEYS:
        value = summary.get(key)
        if value is not None:
            table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table
