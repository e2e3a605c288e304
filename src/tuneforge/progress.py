"""Progress reporting: the library calls a callback; the CLI draws it, the job runner stores it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ProgressEvent:
    """One progress report.

    Attributes:
        kind: ``stage`` (a phase starts), ``step`` (a training step ended), ``message`` or ``metrics``.
        message: Human text for ``stage`` and ``message`` events.
        step: Steps done so far.
        total: Steps in all, when known.
        data: Figures, e.g. ``loss``, ``tokens_per_second``, ``eta_seconds``.
    """

    kind: str
    message: str = ""
    step: int | None = None
    total: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


class ProgressCallback(Protocol):
    """Anything that takes a :class:`ProgressEvent`."""

    def __call__(self, event: ProgressEvent) -> None: ...


def no_progress(event: ProgressEvent) -> None:
    """The default callback: ignore the event."""
