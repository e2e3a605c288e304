"""Draw progress events and results with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tuneforge.progress import ProgressEvent, ProgressKind


class ProgressRenderer:
    """A progress callback that draws a bar per phase (step, loss, tokens/s, ETA) and prints stages."""

    def __init__(self, console: Console) -> None:
        self.console = console
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

    def __enter__(self) -> ProgressRenderer:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        match event.kind:
            case ProgressKind.STAGE if event.message != "training":
                self.console.print(f"[cyan]•[/] {event.message}")
            case ProgressKind.MESSAGE:
                self.console.print(f"  {event.message}")
            case ProgressKind.DATASET:
                d = event.data
                self.console.print(
                    f"  data: {d['examples']} examples ({d['format']}), {d['tokens']} tokens, "
                    f"{d['trained_tokens']} trained, {d['truncated']} truncated, {d['dropped']} dropped"
                )
            case ProgressKind.METRICS if "eval_loss" in event.data and event.step is not None:
                self.console.print(f"  step {event.step}: eval loss {event.data['eval_loss']:.4f}")
            case ProgressKind.STEP | ProgressKind.STAGE if event.total:
                self._advance(event)
            case _:  # a summary is drawn by the command itself (summary_table)
                pass

    def _advance(self, event: ProgressEvent) -> None:
        name = "train" if event.kind is ProgressKind.STAGE or not event.message else event.message
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=event.total, info="")
        d = event.data
        parts = []
        if d.get("loss") is not None:
            parts.append(f"loss {d['loss']:.4f}")
        if d.get("tokens_per_second"):
            parts.append(f"{d['tokens_per_second']:.0f} tok/s")
        self.progress.update(self.tasks[name], completed=event.step or 0, total=event.total, info="  ".join(parts))


def summary_table(summary: dict[str, Any]) -> Table:
    """The figures of a finished run."""
    table = Table(title="run summary", show_header=False)
    for key in ("method", "precision", "train_loss", "eval_loss", "global_step", "trained_tokens",
                "tokens_per_second", "runtime_seconds", "peak_memory_mb", "trainable_parameters", "total_parameters"):
        value = summary.get(key)
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table
