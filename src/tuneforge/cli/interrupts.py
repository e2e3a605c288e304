"""Ctrl-C and SIGTERM as a stop request: the library finishes the step, saves a checkpoint and stops."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """While active, SIGINT and SIGTERM set :attr:`event` instead of ending the process.

    The event is handed to ``services.training.train(stop=...)``; a second Ctrl-C quits at once
    (``KeyboardInterrupt``). Signal handlers can only be installed in the main thread; elsewhere
    (an embedding application) this does nothing.

    Attributes:
        event: Set once a stop signal arrived.
        signum: The signal that arrived first, or None.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
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

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without a checkpoint
        self.signum = self.signum or signum
        self.event.set()
