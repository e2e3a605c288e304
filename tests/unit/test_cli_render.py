"""The CLI's rendering off a terminal (plain step lines, wide tables) and its stop-on-signal handler."""

from __future__ import annotations

import io
import os
import signal

import pytest
from rich.console import Console

from tuneforge.cli.interrupts import StopOnSignals
from tuneforge.cli.render import PIPED_WIDTH, ProgressRenderer, format_seconds, make_console
from tuneforge.progress import ProgressEvent, ProgressKind


def plain_output(events: list[ProgressEvent]) -> list[str]:
    out = io.StringIO()
    with ProgressRenderer(Console(file=out, width=120)) as render:
        for event in events:
            render(event)
    return out.getvalue().splitlines()


def test_piped_training_prints_a_line_per_logged_step():
    events = [ProgressEvent(ProgressKind.STAGE, "training", step=0, total=10)]
    for step in range(1, 11):
        data = {"tokens_per_second": 250.0, "eta_seconds": 10.0 - step}
        if step % 5 == 0:
            data |= {"loss": 1.5 / step, "learning_rate": 2e-4, "logged": True}
        events.append(ProgressEvent(ProgressKind.STEP, step=step, total=10, data=data))
    assert plain_output(events) == [
        "• train: 10 steps",
        "step 5/10  loss 0.3000  lr 0.0002  250 tok/s  eta 0:00:05",
        "step 10/10  loss 0.1500  lr 0.0002  250 tok/s",
    ]


def test_piped_phases_print_every_tenth():
    lines = plain_output([ProgressEvent(ProgressKind.STEP, "qa: generate", step=i, total=100) for i in range(1, 101)])
    assert lines[0] == "qa: generate 1/100" and lines[-1] == "qa: generate 100/100"
    assert len(lines) == 11 and all(line.startswith("qa: generate ") for line in lines)


def test_a_piped_console_is_wide_enough_for_tables(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=io.StringIO()).width == PIPED_WIDTH
    assert format_seconds(3725.4) == "1:02:05"


def test_signals_set_the_stop_request_and_the_exit_code():
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignals() as stop:
        with pytest.raises(KeyboardInterrupt):  # before training starts there is no step to finish
            os.kill(os.getpid(), signal.SIGINT)
        stop.arming(lambda event: None)(ProgressEvent(ProgressKind.STAGE, "training", step=0, total=5))
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.is_set() and stop.exit_code == 143
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C quits at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
