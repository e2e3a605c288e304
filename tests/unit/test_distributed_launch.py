"""The launcher command, the backends' TrainingArguments, DeepSpeed's config, and a worker handing out GPUs."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest

from tuneforge.config import TrainConfig, validate_config
from tuneforge.errors import ConfigError, MissingDependencyError
from tuneforge.services.launch import LaunchPlan, launch_command, train_arguments
from tuneforge.training.distributed import (
    Processes, check_resume, deepspeed_config, distributed_arguments, global_batch, global_batch_line,
)
from tuneforge.training.precision import Precision

TWO = Processes(rank=0, count=2)


def test_one_machine_runs_torchrun_standalone_with_the_same_train_arguments():
    command = launch_command(LaunchPlan(nproc=4), python="py",
                             cli_args=train_arguments("c.yaml", resume=True, overrides=["train.epochs=1"]))
    assert command == ["py", "-m", "torch.distributed.run", "--nproc-per-node=4", "--nnodes=1", "--standalone",
                       "-m", "tuneforge.cli.app", "train", "c.yaml", "--resume", "--set", "train.epochs=1"]


def test_two_machines_meet_at_the_master():
    command = launch_command(LaunchPlan(nproc=8, nnodes=2, node_rank=1, master="10.0.0.1:29500"),
                             cli_args=["train", "c.yaml"])
    assert command[3:8] == ["--nproc-per-node=8", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1",
                            "--master-port=29500"]
    assert "--standalone" not in command


@pytest.mark.parametrize(("plan", "option"), [
    (LaunchPlan(nproc=2, nnodes=2), "--master"),
    (LaunchPlan(nproc=2, nnodes=2, node_rank=2, master="h:1"), "--node-rank"),
    (LaunchPlan(nproc=2, master="no-port"), "--master"),
    (LaunchPlan(nproc=2, master="h:99999"), "--master"),
    (LaunchPlan(nproc=0), "--nproc"),
])
def test_a_bad_launch_plan_names_its_option(plan, option):
    with pytest.raises(ConfigError) as error:
        launch_command(plan, cli_args=["train", "c.yaml"])
    assert error.value.field == option and option in str(error.value)


def test_the_global_batch_counts_every_process():
    train = TrainConfig(model="m", data={"train": "d.jsonl"},
                        train={"batch_size": 4, "gradient_accumulation_steps": 2}).train
    assert global_batch(train, Processes(rank=1, count=3)) == 24
    assert global_batch_line(train, TWO) == "global batch 16 = 4 per process × 2 accumulation × 2 processes"


def train_section(**train):
    return TrainConfig(model="m", data={"train": "d.jsonl"}, train=train).train


CPU, BF16_GPU = Precision(name="fp32", device="cpu"), Precision(name="bf16", device="cuda")


def test_backends_and_their_training_arguments():
    fsdp_train = train_section(distributed="fsdp")
    assert distributed_arguments(fsdp_train, precision=CPU, processes=Processes()) == {}  # one process: no backend
    ddp = distributed_arguments(train_section(), precision=CPU, processes=TWO)
    assert ddp == {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    for precision, backend in ((CPU, "gloo"), (BF16_GPU, "nccl")):  # FSDP runs on CPU too (gloo)
        fsdp = distributed_arguments(fsdp_train, precision=precision, processes=TWO)
        assert fsdp["ddp_backend"] == backend and fsdp["fsdp"] is True
        assert fsdp["fsdp_config"]["version"] == 2 and fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"


def test_an_unknown_backend_is_a_config_error():
    with pytest.raises(ConfigError, match="train.distributed"):
        validate_config({"model": "m", "data": {"train": "d.jsonl"}, "train": {"distributed": "horovod"}}, TrainConfig)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed")
def test_deepspeed_without_the_extra_names_it():
    with pytest.raises(MissingDependencyError) as error:
        distributed_arguments(train_section(distributed="deepspeed_zero2"), precision=CPU, processes=TWO)
    assert error.value.extra == "deepspeed" and "tuneforge[deepspeed]" in error.value.hint


@pytest.mark.parametrize("stage", [2, 3])
def test_the_deepspeed_config_says_the_stage_the_global_batch_and_the_precision(stage):
    train = train_section(distributed=f"deepspeed_zero{stage}", batch_size=3, gradient_accumulation_steps=4,
                          max_grad_norm=0.5)
    config = json.loads(json.dumps(deepspeed_config(train.distributed, train=train, precision=BF16_GPU,
                                                    processes=Processes(rank=1, count=5))))  # the JSON DeepSpeed reads
    assert config["zero_optimization"]["stage"] == stage
    assert (config["train_micro_batch_size_per_gpu"], config["gradient_accumulation_steps"]) == (3, 4)
    assert config["train_batch_size"] == 3 * 4 * 5  # per process × accumulation × processes
    assert config["bf16"] == {"enabled": True} and config["fp16"] == {"enabled": False}
    assert config["gradient_clipping"] == 0.5
    assert ("stage3_gather_16bit_weights_on_model_save" in config["zero_optimization"]) == (stage == 3)
    fp32 = deepspeed_config(train.distributed, train=train, precision=CPU, processes=TWO)
    assert (fp32["bf16"]["enabled"], fp32["fp16"]["enabled"], fp32["train_batch_size"]) == (False, False, 24)


@pytest.mark.parametrize("stage", [2, 3])
def test_transformers_accepts_the_deepspeed_config_and_refuses_a_batch_that_disagrees(stage, tmp_path):
    """DeepSpeed's config checked by transformers against the TrainingArguments (needs the deepspeed extra)."""
    pytest.importorskip("deepspeed")
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    train = train_section(distributed=f"deepspeed_zero{stage}", batch_size=4, gradient_accumulation_steps=2)
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=2,
                             bf16=True, use_cpu=True, report_to=[])  # one process here: world size 1
    ds = HfTrainerDeepSpeedConfig(deepspeed_config(train.distributed, train=train, precision=BF16_GPU,
                                                   processes=Processes()))
    ds.trainer_config_process(args)
    model = SimpleNamespace(config=SimpleNamespace(hidden_size=64))  # the bucket sizes follow it
    ds.trainer_config_finalize(args, model=model, num_training_steps=10)
    assert ds.config["train_batch_size"] == 8 and ds.config["bf16"]["enabled"] is True
    wrong = HfTrainerDeepSpeedConfig(deepspeed_config(train.distributed, train=train, precision=BF16_GPU,
                                                      processes=TWO))  # 16: a global batch of two processes
    wrong.trainer_config_process(args)
    with pytest.raises(ValueError, match="train_batch_size"):
        wrong.trainer_config_finalize(args, model=model, num_training_steps=10)


def checkpoint_dir(path, *files):
    path.mkdir()
    for name in files:
        (path / name).write_bytes(b"")
    return path


def test_a_checkpoint_resumes_under_fsdp_when_fsdp_wrote_it(tmp_path):
    sharded = checkpoint_dir(tmp_path / "checkpoint-3", "pytorch_model_fsdp.bin", "rng_state_0.pth", "rng_state_1.pth")
    plain = checkpoint_dir(tmp_path / "checkpoint-4", "adapter_model.safetensors", "rng_state.pth")
    check_resume(sharded, backend="fsdp", processes=Processes(count=3))  # re-shards on another count of 2+
    check_resume(plain, backend="fsdp", processes=Processes())  # one process: no FSDP either time
    check_resume(plain, backend="ddp", processes=TWO)
    with pytest.raises(ConfigError, match="checkpoint-3 was saved by FSDP on 2 processes; this run is one process"
                       ) as error:
        check_resume(sharded, backend="fsdp", processes=Processes())
    assert error.value.field == "--nproc" and "--nproc 2" in error.value.hint
    with pytest.raises(ConfigError, match="checkpoint-4 was saved by one process; this run is fsdp on 2 processes"):
        check_resume(plain, backend="fsdp", processes=TWO)


def test_a_deepspeed_checkpoint_resumes_under_deepspeed_on_its_count(tmp_path):
    """Without this check the Trainer finds no optimizer.pt in it and goes on with a fresh optimizer."""
    zero = checkpoint_dir(tmp_path / "checkpoint-3", "latest", "rng_state_0.pth", "rng_state_1.pth")
    check_resume(zero, backend="deepspeed_zero2", processes=TWO)
    for backend, count in (("deepspeed_zero2", 3), ("deepspeed_zero2", 1), ("ddp", 2)):
        with pytest.raises(ConfigError, match="saved by DeepSpeed on 2 processes") as error:
            check_resume(zero, backend=backend, processes=Processes(count=count))
        assert "--nproc 2" in error.value.hint
    with pytest.raises(ConfigError, match="saved by DDP on 2 processes; this run is deepspeed_zero3 on 2"):
        check_resume(checkpoint_dir(tmp_path / "checkpoint-4", "rng_state_0.pth", "rng_state_1.pth"),
                     backend="deepspeed_zero3", processes=TWO)


# --- a worker that hands out GPUs -----------------------------------------------------------------------------
class NeedsKind:
    name, title = "train", "Job"

    def devices_needed(self, job):
        return job.request["nproc"]


class Kinds:
    def get(self, name):
        return NeedsKind()


class Store:
    def __init__(self):
        self.updates = []

    def update_job(self, job_id, update, **kwargs):
        self.updates.append((job_id, update))
        return True


def worker(gpus, running=()):
    import threading

    from tuneforge.jobs.worker import RunningJob, Worker

    w = Worker.__new__(Worker)
    w.gpus, w.kinds, w.store, w.id, w._waiting_for = gpus, Kinds(), Store(), "w1", 0
    w._lock = threading.Lock()
    w.running = {f"j{i}": RunningJob(f"j{i}", None, 0.0, devices=tuple(d)) for i, d in enumerate(running)}
    return w


def job(nproc):
    return SimpleNamespace(id="new", kind="train", request={"nproc": nproc})


def test_a_worker_hands_each_job_free_gpus_and_puts_back_what_it_cannot_serve():
    from tuneforge.storage.records import JobStatus

    assert worker([])._devices_for(job(4)) == ()  # no --gpus: jobs see every device
    assert worker(["0", "1", "2", "3"], running=[("1",)])._devices_for(job(2)) == ("0", "2")
    busy = worker(["0", "1", "2", "3"], running=[("0", "1"), ("2",)])
    assert busy._devices_for(job(2)) is None and busy._waiting_for == 2  # back to the queue; wait for 2 free
    assert busy.store.updates[-1][1].status is JobStatus.QUEUED
    small = worker(["0", "1"])
    assert small._devices_for(job(4)) is None
    assert small.store.updates[-1][1].status is JobStatus.FAILED
    assert "asks for 4 GPUs" in small.store.updates[-1][1].error["message"]


def test_a_train_job_needs_one_gpu_per_process():
    from tuneforge.api.openai.protocol import OpenAIJobRequest
    from tuneforge.services.job_kinds import TrainKind

    request = OpenAIJobRequest(model="m", training_file="f", tuneforge={"nproc": 4})
    assert request.tuneforge.nproc == 4
    assert TrainKind().devices_needed(SimpleNamespace(request={"nproc": 4})) == 4
    assert TrainKind().devices_needed(SimpleNamespace(request={})) == 1


def test_a_launched_job_reports_itsestimated_total_steps_from_the_epochs():
    from tuneforge.services.job_launch import estimated_total_steps

    assert estimated_total_steps({"step": 3, "epoch": 1.0}, epochs=2.5) == 8  # the Trainer's ceil(2.5 epochs × 3 steps)
    assert estimated_total_steps({"step": 1, "epoch": 0.25}, epochs=3) == 12
    assert estimated_total_steps({"step": 0, "epoch": 0}, epochs=3) is None
