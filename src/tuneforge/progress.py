"""Progress reporting: the library calls a callback; the CLI draws it, the job process stores it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


class ProgressKind(str, Enum):
    """What a :class:`ProgressEvent` reports."""

    STAGE = "stage"  # a phase starts (``message`` names it)
    STEP = "step"  # a step of a long phase ended (``step`` of ``total``; training steps carry loss, ETA, ...)
    MESSAGE = "message"  # something the user should read
    METRICS = "metrics"  # figures of a step, such as ``eval_loss``
    DATASET = "dataset"  # the training data was read: ``data`` holds format, examples and token counts
    SUMMARY = "summary"  # a run ended: ``data`` is its summary


@dataclass
class ProgressEvent:
    """One progress report.

    Attributes:
        kind: What the event reports (a :class:`ProgressKind`; its string value is accepted too).
        message: Human text for ``stage``, ``step`` and ``message`` events.
        step: Steps done so far.
        total: Steps in all, when known.
        data: Figures, e.g. ``loss``, ``tokens_per_second``, ``eta_seconds``.
    """

    kind: ProgressKind
    message: str = ""
    step: int | None = None
    total: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = ProgressKind(self.kind)  # a misspelt kind fails here, not silently in a renderer


class ProgressCallback(Protocol):
    """Anything that takes a :class:`ProgressEvent`."""

    def __call__(self, event: ProgressEvent) -> None: ...


def no_progress(event: ProgressEvent) -> None:
    """The default callback: ignore the event."""
