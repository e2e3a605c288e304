"""``StepTimer`` (the instrumentation of ``benchmarks/scaling.py --per-rank``) and the per-process token counts."""

from __future__ import annotations

import json

from tuneforge.config import TrainConfig
from tuneforge.training import run_training
from tuneforge.training.step_timing import StepTimer


def test_a_step_timer_writes_one_row_per_step_that_adds_up(tiny_model, tmp_path, settings):
    """One process: one row per optimizer step (2 micro-batches each), tokens within the padded tokens, no all-reduce;
    the rows' tokens are the summary's."""
    from fixtures.data import MEMORIZE, write_jsonl

    data = write_jsonl(tmp_path / "train.jsonl", MEMORIZE)
    steps = 3
    config = TrainConfig.model_validate({
        "model": str(tiny_model), "method": {"name": "lora"}, "data": {"train": str(data)},
        "train": {"max_steps": steps, "batch_size": 2, "gradient_accumulation_steps": 2, "precision": "fp32",
                  "logging_steps": 1, "save_steps": 100},
        "output_dir": str(tmp_path / "run")})
    summary = run_training(config, settings=settings, extra_callbacks=[StepTimer(tmp_path / "timing")]).summary

    rows = [json.loads(line) for line in (tmp_path / "timing" / "steps-rank0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        assert row["examples"] == 4 and 0 < row["label_tokens"] < row["tokens"] <= row["padded_tokens"]
        assert row["allreduce_s"] == 0.0 and row["compute_s"] > 0 and row["optimizer_s"] > 0
        assert row["step_s"] >= row["compute_s"] + row["optimizer_s"]
    assert summary["tokens_per_process"] == [sum(r["tokens"] for r in rows)]
    assert summary["padded_tokens_per_process"] == [sum(r["padded_tokens"] for r in rows)]
    assert summary["label_tokens_per_process"] == [sum(r["label_tokens"] for r in rows)]
