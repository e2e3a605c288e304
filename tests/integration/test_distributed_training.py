"""Training on two processes (torchrun, gloo on CPU, one thread each) matches one process with the same global batch.

Tolerance: fp32 weights and loss; the two runs sum the same per-token losses and gradients in a different order
(two halves all-reduced against one batch), so they agree to float32 rounding, ~1e-6 relative; 1e-4 leaves room
for the different padding of half batches and nothing for a wrong global batch or a doubled step. The adapters
compare at ADAPTER_RTOL (below).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tuneforge.training import run_training

CLI = [sys.executable, "-m", "tuneforge.cli.app"]
STEPS, PER_PROCESS = 6, 2
RTOL = 1e-4
# AdamW divides by sqrt(v): a float32 rounding difference in a near-zero gradient can move one weight by up to
# ~lr/30 (measured 3e-4, in one element of 1024), so adapters compare by the relative norm of their difference per
# tensor (measured ~1e-4); a wrong run (another batch, a doubled step) differs by O(lr) in every element (> 1e-1).
ADAPTER_RTOL = 2e-3


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
        drift = (torch.linalg.norm(a[name] - b[name]) / torch.linalg.norm(a[name])).item()
        assert drift < ADAPTER_RTOL, f"{name}: relative difference {drift:.2e}"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from fixtures.data import MEMORIZE, write_jsonl

    # 12: the server takes files of 10 examples or more, and a multiple of the global batch (4) gives both runs the
    # same batches (otherwise the two processes' last batch of an epoch is filled with repeats: accelerate's
    # even_batches, as DistributedSampler pads)
    rows = MEMORIZE + MEMORIZE[:4]
    return write_jsonl(tmp_path_factory.mktemp("dist-data") / "train.jsonl", rows)


def one_process_run(model: Path, data: Path, out: Path, settings: Any) -> Path:
    """The reference: one process, batch 4 (the two-process runs use 2 per process)."""
    from tuneforge.config import TrainConfig

    run_training(TrainConfig.model_validate(config(model, data, out, batch_size=2 * PER_PROCESS)), settings=settings)
    return out


@pytest.fixture(scope="module")
def one_process(tiny_model, data, tmp_path_factory, settings) -> Path:
    return one_process_run(tiny_model, data, tmp_path_factory.mktemp("one") / "run", settings)


@pytest.fixture(scope="module")
def two_processes(tiny_model, data, tmp_path_factory):
    """``two_processes(backend)``: the run folder and launcher result of a two-process run (made once)."""
    runs: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def run(backend: str) -> tuple[Path, subprocess.CompletedProcess]:
        if backend not in runs:
            out = tmp_path_factory.mktemp(backend) / "run"
            config_dict = config(tiny_model, data, out, batch_size=PER_PROCESS, distributed=backend)
            runs[backend] = out, launch(config_dict, out.parent / "c.yaml")
        return runs[backend]
    return run


@pytest.mark.parametrize("backend", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_two_processes_give_the_loss_curve_and_adapter_of_one(backend, two_processes, one_process):
    """Every backend on CPU (gloo). FSDP2 and ZeRO-3: each process holds half of every decoder layer's weights
    (LoRA's included), gathered for the forward; ZeRO-2: half of the optimizer state and gradients. The adapter
    saved at the end is the full one. DeepSpeed needs the deepspeed extra (its CPU accelerator; no oneCCL)."""
    if backend.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    out, result = two_processes(backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("global batch 4 = 2 per process × 1 accumulation × 2 processes") == 1  # rank 1 is quiet
    assert result.stdout.count("run summary") == 1
    assert losses(out) == pytest.approx(losses(one_process), rel=RTOL)
    assert_same_adapter(adapter(out), adapter(one_process))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["processes"], summary["global_batch_size"], summary["distributed"]) == (2, 4, backend)
    assert summary["global_step"] == STEPS
    # the label-only loss (train.speed default) runs through the DDP / FSDP root's forward; DeepSpeed: the plain path
    assert summary["label_only_loss"] is (backend in ("ddp", "fsdp"))
    assert json.loads((one_process / "summary.json").read_text())["label_only_loss"] is True
    one = json.loads((one_process / "summary.json").read_text())
    if not backend.startswith("deepspeed"):  # the same examples in all: the processes' tokens add up to one's
        assert sum(summary["tokens_per_process"]) == one["tokens_per_process"][0]


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory) -> Path:
    """12 chats whose answers run from 1 to 12 words: the processes' examples differ in length and label tokens."""
    from fixtures.data import write_jsonl

    words = "one two three four five six seven eight nine ten eleven twelve".split()
    rows = [{"messages": [{"role": "user", "content": f"Count to {n}."},
                          {"role": "assistant", "content": " ".join(words[:n])}]} for n in range(1, 13)]
    return write_jsonl(tmp_path_factory.mktemp("uneven") / "train.jsonl", rows)


@pytest.fixture(scope="module")
def uneven_one_process(tiny_model, uneven_data, tmp_path_factory, settings) -> Path:
    return one_process_run(tiny_model, uneven_data, tmp_path_factory.mktemp("uneven-one") / "run", settings)


def test_uneven_label_counts_per_process_still_give_the_one_process_step(tiny_model, uneven_data, uneven_one_process,
                                                                          tmp_path):
    """The loss of each process is its label tokens' summed loss over the global count of label tokens (the
    Trainer's num_items_in_batch, gathered), so DDP's gradient average is the one-process gradient although the
    processes hold different numbers of label tokens, with the positional split and with ``balance_processes``
    (default), which splits each global batch by padded tokens: the processes' padded tokens come out closer. The
    model's own loss (label_only_loss off) is normalised alike (fp32: the two losses agree to rounding)."""
    one = json.loads((uneven_one_process / "summary.json").read_text())
    imbalance = {}
    for balance, label_only in ((True, True), (False, True), (True, False)):
        out = tmp_path / f"run-{balance}-{label_only}"
        speed = {"balance_processes": balance, "label_only_loss": label_only}
        result = launch(config(tiny_model, uneven_data, out, batch_size=PER_PROCESS, speed=speed), tmp_path / "c.yaml")
        assert result.returncode == 0, result.stderr[-3000:]
        assert losses(out) == pytest.approx(losses(uneven_one_process), rel=RTOL)
        assert_same_adapter(adapter(out), adapter(uneven_one_process))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["label_only_loss"] is label_only
        labels, padded = summary["label_tokens_per_process"], summary["padded_tokens_per_process"]
        assert labels[0] != labels[1]  # uneven: a per-process mean would weigh the tokens differently
        assert sum(labels) == one["label_tokens_per_process"][0]
        assert sum(summary["tokens_per_process"]) == one["tokens_per_process"][0]
        imbalance[balance] = max(padded) / min(padded)  # (True, False) gives the same split as (True, True)
    assert imbalance[True] < imbalance[False] - 0.02, imbalance


def test_an_fsdp_checkpoint_resumes_exactly_on_two_processes_and_is_refused_on_one(two_processes, tiny_model, data,
                                                                                   tmp_path, settings):
    """The FSDP run's checkpoint-3 (a full state dict: adapter and optimizer) resumed on two processes gives the
    steps 4-6 of the run that did not stop; one process cannot load it (transformers loads it through FSDP)."""
    from tuneforge.config import TrainConfig
    from tuneforge.errors import ConfigError

    done, result = two_processes("fsdp")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "run"
    shutil.copytree(done, out)  # as if it had stopped after checkpoint-3
    for finished in (out / "checkpoints" / "checkpoint-6", out / "adapter"):
        shutil.rmtree(finished)
    marker = json.loads((out / "tuneforge_run.json").read_text())
    (out / "tuneforge_run.json").write_text(json.dumps({**marker, "status": "interrupted"}))
    resumed = config(tiny_model, data, out, batch_size=PER_PROCESS, distributed="fsdp")

    with pytest.raises(ConfigError, match="checkpoint-3 was saved by FSDP on 2 processes"):
        run_training(TrainConfig.model_validate(resumed), settings=settings, resume=True)
    result = launch(resumed, tmp_path / "c.yaml", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == "checkpoint-3"
    assert losses(out) == pytest.approx(losses(done), rel=RTOL)
    assert_same_adapter(adapter(out), adapter(done))


def test_ctrl_c_stops_both_processes_after_one_step_and_one_process_resumes(tiny_model, data, tmp_path, settings):
    """Ctrl-C reaches the two processes through the launcher; they agree on the step to stop after and save one
    checkpoint; ``--resume`` continues it on one process (a ddp checkpoint resumes on another count)."""
    from tuneforge.config import TrainConfig

    out, steps = tmp_path / "run", 40
    first = config(tiny_model, data, out, batch_size=PER_PROCESS, max_steps=steps, save_steps=1000)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(first))
    process = subprocess.Popen([*CLI, "train", str(path), "--nproc", "2"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for line in process.stdout:  # plain lines off a terminal, one per logged step
        if line.startswith("step 2/"):
            process.send_signal(signal.SIGINT)  # to the CLI, as a terminal's Ctrl-C; it passes it on
            break
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    [message] = [line for line in stderr.splitlines() if line.startswith("interrupted at step")]  # rank 0 alone
    stopped = int(message.split()[3].rstrip(";"))
    assert 2 <= stopped < steps and message.endswith(f"(checkpoint-{stopped} kept)")
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"checkpoint-{stopped}"]
    assert json.loads((out / "tuneforge_run.json").read_text())["status"] == "interrupted"

    summary = run_training(TrainConfig.model_validate(first), settings=settings, resume=True).summary
    assert (summary["resumed_from"], summary["global_step"], summary["processes"]) == (f"checkpoint-{stopped}", steps, 1)
    assert len(losses(out)) == steps  # every step once: the first part's rows, then this run's


def test_a_platform_job_with_nproc_2_runs_under_the_launcher_and_pauses(tiny_model, data, tmp_path):
    """``tuneforge.nproc: 2``: the job process runs torchrun; rank 0's steps reach the job's progress; a pause
    reaches both processes (SIGTERM through the launcher), which checkpoint one step; the resumed job finishes."""
    import openai

    from fixtures.platform import running_server, wait_for
    from tuneforge.settings import Settings

    settings = Settings(home=str(tmp_path / "home"), concurrency=1, poll_seconds=0.2, heartbeat_seconds=0.3,
                        threads_per_job=1, base_models={"tiny-llama": str(tiny_model)})
    steps = 150  # long enough (~10 s) for the pause to land mid-run
    train = config(tiny_model, data, tmp_path, batch_size=PER_PROCESS, max_steps=steps, save_steps=1000)["train"]
    with running_server(settings) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.keys["acme"], max_retries=0)
        with data.open("rb") as handle:
            file = client.files.create(file=(data.name, handle), purpose="fine-tune")
        job = client.fine_tuning.jobs.create(
            model="tiny-llama", training_file=file.id, seed=42,
            extra_body={"tuneforge": {"nproc": 2, "method": {"name": "lora", "dropout": 0.0}, "train": train}})
        wait_for(lambda: (client.fine_tuning.jobs.retrieve(job.id).progress or {}).get("step"), timeout=120,
                 what="a first step")
        client.fine_tuning.jobs.pause(job.id)
        wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "paused", timeout=120, what="the pause")
        [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job.id).data
        assert checkpoint.step_number < steps
        client.fine_tuning.jobs.resume(job.id)
        job = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in
                       ("succeeded", "failed", "cancelled") and j, timeout=240, what="the job")
        assert job.status == "succeeded", job.error
        events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)]
        assert sum(m.startswith("Launching 2 training processes") for m in events) == 2  # started, resumed
        assert any(m.startswith(f"Step {steps}/{steps}") for m in events)
    run = settings.run_dir(job.id)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["processes"], summary["global_step"]) == (2, steps)
    assert summary["resumed_from"] == f"checkpoint-{checkpoint.step_number}"
    assert len(losses(run)) == steps


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("backend", ["fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_sharded_backends_match_one_process_on_two_gpus(backend, tiny_model, data, one_process, tmp_path):
    """NCCL: FSDP (also tested on CPU above) and DeepSpeed (GPUs only: its CPU accelerator needs oneCCL and IPEX),
    where two GPUs are lent; DeepSpeed also needs the deepspeed extra."""
    if backend.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    out = tmp_path / "run"
    result = launch(config(tiny_model, data, out, batch_size=PER_PROCESS, distributed=backend), tmp_path / "c.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert losses(out) == pytest.approx(losses(one_process), rel=1e-3)  # GPU kernels: looser than gloo on CPU
    assert_same_adapter(adapter(out), adapter(one_process))
    assert json.loads((out / "summary.json").read_text())["distributed"] == backend
