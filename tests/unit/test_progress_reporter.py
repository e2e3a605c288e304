"""The training step reporter's metrics file: rows appended only past the fence (a platform job's lease check)."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from tuneforge.errors import LeaseLost
from tuneforge.training.callbacks import ProgressReporter


def step(reporter: ProgressReporter, state: TrainerState, number: int, loss: float) -> None:
    state.global_step = number
    reporter.on_log(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl(),
                    logs={"loss": loss, "learning_rate": 1e-3})


def test_a_row_is_appended_only_after_the_fence_lets_it_through(tmp_path):
    metrics, events, lost = tmp_path / "metrics.jsonl", [], []

    def fence() -> None:
        if lost:
            raise LeaseLost("ftjob-1", attempt=1)

    reporter = ProgressReporter(events.append, metrics, fence=fence)
    state = TrainerState()
    state.max_steps = 10
    reporter.on_train_begin(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl())
    step(reporter, state, 1, 0.5)
    lost.append(True)  # another attempt took the job over after this process's fenced store write
    with pytest.raises(LeaseLost):
        step(reporter, state, 2, 0.4)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1]
