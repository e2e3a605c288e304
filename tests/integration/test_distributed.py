"""Training on two processes (torchrun, gloo on CPU, one thread each) matches one process with the same global batch.

Tolerance: fp32 weights and loss; the two runs sum the same per-token losses and gradients in a different order
(two halves all-reduced against one batch), so they agree to float32 rounding, ~1e-6 relative; 1e-4 leaves room
for the different padding of half batches and nothing for a wrong global batch or a doubled step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tuneforge.errors import Interrupted
from tuneforge.training import run_training

CLI = [sys.executable, "-m", "tuneforge.cli.app"]
STEPS, PER_PROCESS = 6, 2
RTOL = 1e-4


def config(model: Path, data: Path, out: Path, *, batch_size: int, **train: Any) -> dict[str, Any]:
    return {"model": str(model), "method": {"name": "lora", "dropout": 0.0}, "data": {"train": str(data)},
            "train": {"max_steps": STEPS, "batch_size": batch_size, "learning_rate": 1e-2, "logging_steps": 1,
                      "precision": "fp32", "save_steps": 3, **train},
            "output_dir": str(out)}


def launch(config_dict: dict[str, Any], path: Path, *args: str) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(config_dict))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*CLI, "train", str(path), "--nproc", "2", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # each step logged once: rank 0 alone writes
    return [r["loss"] for r in rows]


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def assert_same_adapter(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=RTOL, atol=1e-5, msg=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from fixtures.data import MEMORIZE, write_jsonl

    return write_jsonl(tmp_path_factory.mktemp("dist-data") / "train.jsonl", MEMORIZE)


@pytest.fixture(scope="module")
def one_process(tiny_model, data, tmp_path_factory, settings) -> Path:
    """The reference: one process, batch 4 (the two-process runs use 2 per process)."""
    from tuneforge.config import TrainConfig

    out = tmp_path_factory.mktemp("one") / "run"
    run_training(TrainConfig.model_validate(config(tiny_model, data, out, batch_size=2 * PER_PROCESS)),
                 settings=settings)
    return out


def test_two_processes_give_the_loss_curve_and_adapter_of_one(tiny_model, data, one_process, tmp_path):
    out = tmp_path / "run"
    result = launch(config(tiny_model, data, out, batch_size=PER_PROCESS), tmp_path / "c.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("global batch 4 = 2 per process × 1 accumulation × 2 processes") == 1  # rank 1 is quiet
    assert result.stdout.count("run summary") == 1
    assert losses(out) == pytest.approx(losses(one_process), rel=RTOL)
    assert_same_adapter(adapter(out), adapter(one_process))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["global_batch_size"], summary["distributed"]) == (2, 4, "ddp")
    assert summary["global_step"] == STEPS


def test_a_one_process_checkpoint_resumes_on_two_processes(tiny_model, data, one_process, tmp_path, settings):
    from transformers import TrainerCallback

    from tuneforge.config import TrainConfig

    out, stop = tmp_path / "run", threading.Event()

    class StopAtThree(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:
                stop.set()  # checked at the end of step 3: a checkpoint of step 3, then Interrupted

    first = config(tiny_model, data, out, batch_size=2 * PER_PROCESS)
    with pytest.raises(Interrupted):
        run_training(TrainConfig.model_validate(first), settings=settings, stop=stop, extra_callbacks=[StopAtThree()])
    assert (out / "checkpoints" / "checkpoint-3").is_dir()
    # The config (batch 4 per process) is part of the run's identity, so two processes continue at global batch 8.
    result = launch(first, tmp_path / "c.yaml", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from checkpoint-3" in result.stdout
    resumed, reference = losses(out), losses(one_process)
    assert len(resumed) == STEPS and resumed[:3] == reference[:3]  # steps 1-3 kept from the one-process part
    assert resumed[3] < 0.8 * reference[0]  # step 4 starts from the checkpoint's trained adapter, not afresh
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["global_batch_size"], summary["resumed_from"]) == (2, 8, "checkpoint-3")
