"""Ctrl-C and SIGTERM as a stop request: the library finishes the step, saves a checkpoint and stops."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """While active, SIGINT and SIGTERM set :attr:`event` instead of ending the process.

    The event is handed to ``services.training.train(stop=...)``. Until the training loop starts
    (:meth:`arming` sees its ``training`` stage) there is no step to finish, and a signal quits at once,
    as does a second Ctrl-C (``KeyboardInterrupt``; ``SystemExit`` for SIGTERM). Signal handlers can
    only be installed in the main thread; elsewhere (an embedding application) this does nothing.

    Attributes:
        event: Set once a stop signal arrived.
        signum: The signal that arrived first, or None.
        armed: Whether a signal now means "stop after this step" (training runs).
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def exit_code(self) -> int:
        """The shell's status for the signal received: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signum or signal.SIGINT)

    def arming(self, progress: ProgressCallback) -> ProgressCallback:
        """Wrap a progress callback so that the training stage arms the stop request."""

        def forward(event: ProgressEvent) -> None:
            if event.kind is ProgressKind.STAGE and event.message == "training":
                self.armed = True
            progress(event)

        return forward

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed or self.event.is_set():  # nothing to checkpoint yet, or asked twice: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        self.event.set()
