"""The one error tree of tuneforge.

Every error says what was wrong (with the value), where, and what to do. The CLI prints ``error:`` and
``hint:`` lines; the API maps the classes to HTTP codes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TuneforgeError(Exception):
    """Root of all tuneforge errors.

    Args:
        message: What was wrong, with the offending value.
        hint: What to do about it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(TuneforgeError):
    """A config that does not validate: names the file, line and field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ", ".join(
            part
            for part in (file and f"{file}", line and f"line {line}", field and f"field '{field}'")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file, self.line, self.field = file, line, field


class DataError(TuneforgeError):
    """Bad training or evaluation data: names the file, the line and the reason."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, hint: str | None = None
    ) -> None:
        where = ", ".join(part for part in (file and f"{file}", line and f"line {line}") if part)
        if hint is None and line is not None:
            hint = "fix or remove that record (the README's Data section lists the formats), then run again"
        super().__init__(f"{where}: {message}" if where else message, hint=hint)
        self.file, self.line = file, line


class NotFoundError(TuneforgeError):
    """A model, file, run or record that does not exist."""


class ConflictError(TuneforgeError):
    """An action that would overwrite or contradict something that exists."""


class MissingDependencyError(TuneforgeError):
    """An optional package is not installed: names the extra to install."""

    def __init__(self, package: str, *, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed",
            hint=f"pip install 'tuneforge[{extra}]'  (or: pip install {package})",
        )
        self.package, self.extra = package, extra


class Interrupted(TuneforgeError):
    """A run stopped on request (Ctrl-C, SIGTERM, a pause) after saving a checkpoint; it can be resumed.

    Args:
        step: The optimizer step the checkpoint holds.
        checkpoint: The checkpoint folder written at that step, when known.
    """

    def __init__(self, *, step: int, checkpoint: str | None = None) -> None:
        super().__init__(f"interrupted at step {step}; continue with --resume",
                         hint="run the same command with --resume to continue from that checkpoint")
        self.step, self.checkpoint = step, checkpoint


class StorageError(TuneforgeError):
    """The store or an artifact file could not be read or written."""


class AuthenticationError(TuneforgeError):
    """A request without a valid API key."""


class TooLargeError(TuneforgeError):
    """An upload above the server's size limit."""


class ForbiddenError(TuneforgeError):
    """A valid key that may not do this (an admin route without an admin key)."""


class RateLimitError(TuneforgeError):
    """A project over one of its limits (queued or running jobs): try again later (HTTP 429)."""


class QuotaError(TuneforgeError):
    """A project over its storage quota (HTTP 413)."""


class LeaseLost(TuneforgeError):
    """A job process's write found that its attempt no longer holds the job (requeued or taken over while
    this process was frozen or cut off): the process must stop at once without writing anything more."""

    def __init__(self, job_id: str, *, attempt: int) -> None:
        super().__init__(f"job {job_id}: attempt {attempt} no longer holds the job (its lease was lost)",
                         hint="another worker runs it now; this process stops without writing")
        self.job_id, self.attempt = job_id, attempt


def suggest(name: object, choices: Iterable[object]) -> str:
    """``"did you mean 'x'?"`` for the choice closest to a misspelt ``name``, or ``""`` when none is close.

    The one "did you mean" of tuneforge: config keys and method names, metrics, built-in tasks.
    """
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"did you mean '{close[0]}'?" if close else ""
