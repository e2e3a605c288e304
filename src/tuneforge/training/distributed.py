"""Training on many processes: the backend's TrainingArguments, which process writes, the global batch.

A run on N processes is the same :func:`~tuneforge.training.run.run_training` started N times by a launcher
(``torchrun`` / ``accelerate launch``; see :mod:`tuneforge.services.launch`), which sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``... accelerate's ``PartialState`` reads them and joins the process group
(gloo on CPU, NCCL on CUDA); the Trainer then wraps the model in DDP / FSDP / DeepSpeed as
``train.distributed`` says. There is no second training loop.

Backends (``train.distributed``; one process ignores it):

- ``ddp`` (default): every process holds the whole model, gradients are averaged. Checkpoints are plain
  (adapter or model + optimizer state): they resume on any process count.
- ``fsdp``: parameters, gradients and optimizer state sharded across processes (FSDP2, wrapping each decoder
  layer), on GPUs (NCCL) and on CPU (gloo). Checkpoints hold a full state dict: they resume under FSDP on any
  count of 2 processes or more, not on one (:func:`check_resume`).
- ``deepspeed_zero2`` / ``deepspeed_zero3``: DeepSpeed ZeRO stage 2 (optimizer state and gradients sharded) or
  3 (parameters too); needs the ``deepspeed`` extra; on GPUs (NCCL) and on CPU (DeepSpeed's CPU accelerator,
  chosen when there is no GPU, talks gloo when Intel's oneCCL bindings are absent). Its checkpoints resume on
  another count through DeepSpeed's universal checkpoint only; tuneforge resumes them on the same count.

Each global batch is split across the processes by cost (``train.speed.balance_processes``, :mod:`.balance`); the
loss is normalised by the global count of label tokens, so the step is the one-process step whatever the split.
``summary.json`` gives each process's tokens; :mod:`.step_timing` times each process's steps (benchmarks only).

On CPU accelerate drops the FSDP and DeepSpeed plugins and would silently run DDP; :func:`shard_on_cpu` turns
them on as accelerate does on GPUs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from tuneforge.training.precision import Precision

BACKENDS = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")
# fsdp: on any count of 2 or more (an FSDP checkpoint needs FSDP to load: see check_resume)
RESUMES_ON_ANOTHER_COUNT = {"ddp": True, "fsdp": True, "deepspeed_zero2": False, "deepspeed_zero3": False}
FSDP_CHECKPOINT_FILES = "pytorch_model_fsdp*"  # accelerate's save_fsdp_model: a .bin (full) or a folder (sharded)


@dataclass(frozen=True)
class Processes:
    """This process's place in the run.

    Attributes:
        rank: 0 for the process that writes the run folder, logs and reports progress.
        count: Processes in the run (1 without a launcher).
    """

    rank: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes outputs, logs and progress (rank 0)."""
        return self.rank == 0


def join_processes(*, device: str) -> Processes:
    """Join the launcher's process group, if there is one (accelerate reads the launcher's environment).

    Args:
        device: ``cpu`` (gloo backend) or ``cuda`` (NCCL).
    """
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")  # gloo on CPU (MPI where torch has it), NCCL on CUDA
    return Processes(rank=state.process_index, count=state.num_processes)


def wait_for_everyone() -> None:
    """A barrier across the run's processes (nothing with one process)."""
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set on any process of the run (an all-reduce; ``flag`` itself with one process).

    A stop request (Ctrl-C, SIGTERM) reaches the processes at slightly different times: they agree on it at
    each step's end, so that all stop after the same step and save one checkpoint together.
    """
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    vote = torch.tensor([1.0 if flag else 0.0], device=PartialState().device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def gather_from_processes(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` with one process. A collective: every process
    calls it."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def global_batch(train: Any, processes: Processes) -> int:
    """Examples per optimizer step: batch size × gradient accumulation × processes."""
    return train.batch_size * train.gradient_accumulation_steps * processes.count


def global_batch_line(train: Any, processes: Processes) -> str:
    """The line shown before training, e.g. ``global batch 16 = 4 per process × 2 accumulation × 2 processes``."""
    plural = "es" if processes.count != 1 else ""
    return (f"global batch {global_batch(train, processes)} = {train.batch_size} per process × "
            f"{train.gradient_accumulation_steps} accumulation × {processes.count} process{plural}")


def distributed_arguments(train: Any, *, precision: Precision, processes: Processes) -> dict[str, Any]:
    """Extra ``TrainingArguments`` for ``train.distributed`` (nothing with one process).

    Args:
        train: The run's ``train`` section (backend, batch size, accumulation, clipping).
        precision: The resolved precision (device, bf16 / fp16).
        processes: This process's place in the run.

    Raises:
        MissingDependencyError: A DeepSpeed backend without DeepSpeed installed.
    """
    backend = train.distributed
    if processes.count == 1:
        return {}
    common: dict[str, Any] = {"ddp_backend": "gloo" if precision.device == "cpu" else "nccl"}
    if backend == "ddp":
        # DDP's other knobs stay at torch's defaults: DDP reduces only the parameters that require a gradient
        # (LoRA's), and its whole cost on CPU is small. Measured (gloo, 2 processes of one thread, SmolLM2-135M LoRA
        # r16 = 420 tensors, 19.5 MB): all-reduce 11 ms CPU per step, DDP's bookkeeping + all-reduce 20-25 ms per step
        # against ~1,500 ms of forward + backward; gradient_as_bucket_view, batched_grad_copy, bucket_cap_mb 100 and
        # no buffer broadcast (a 4-byte collective, 0.1 ms CPU) moved it by less than the 4 ms noise.
        return {**common, "ddp_find_unused_parameters": False}
    if backend == "fsdp":
        return {**common, "fsdp": True, "fsdp_config": fsdp_config()}
    check_deepspeed(backend)
    return {**common, "deepspeed": deepspeed_config(backend, train=train, precision=precision, processes=processes)}


def shard_on_cpu(trainer: Any) -> None:
    """Turn on the FSDP or DeepSpeed plugin the Trainer was given, on a CPU run of several processes (gloo).

    accelerate takes these plugins only on GPU-like devices: ``AcceleratorState.__init__`` (accelerate 1.16,
    ``accelerate/state.py``) sets ``DistributedType.DEEPSPEED`` only ``if ... not cpu`` and
    ``DistributedType.FSDP`` for ``MULTI_GPU`` / ``MULTI_XPU`` / ... but not ``MULTI_CPU``; it drops the plugin
    and ``prepare`` wraps the model in DDP. torch's FSDP2 (``fully_shard``) and DeepSpeed's CPU accelerator run
    on CPU with gloo, so this does what accelerate does on GPUs: the state's type becomes FSDP / DEEPSPEED
    (``PartialState``'s too, which every ``AcceleratorState()`` copies), it holds the plugin with the run's
    mixed precision, and the Trainer knows. Call it after the Trainer is built, before ``train()`` (which
    prepares the model); it does nothing where accelerate already has it right (GPUs, DDP, one process).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return
    if trainer.args.fsdp_plugin_args is not None:
        plugin = FullyShardedDataParallelPlugin(**trainer.args.fsdp_plugin_args)
        if state.mixed_precision != "no":
            plugin.set_mixed_precision(state.mixed_precision)
        state.fsdp_plugin, kind = plugin, DistributedType.FSDP
        trainer.is_fsdp_enabled = True
    elif getattr(trainer.args, "deepspeed_plugin", None) is not None:
        from transformers.integrations.deepspeed import propagate_args_to_deepspeed

        plugin = trainer.args.deepspeed_plugin
        plugin.set_mixed_precision(state.mixed_precision)
        plugin.select(_from_accelerator_state=True)
        state.deepspeed_plugins, kind = plugin, DistributedType.DEEPSPEED
        trainer.is_deepspeed_enabled = True
    else:
        return
    state.distributed_type = kind
    PartialState._shared_state["distributed_type"] = kind
    if kind == DistributedType.DEEPSPEED:
        propagate_args_to_deepspeed(trainer.accelerator, trainer.args)  # as the Trainer does on GPUs


def check_resume(checkpoint: Path | None, *, backend: str, processes: Processes) -> None:
    """A checkpoint written under FSDP loads under FSDP only (a plain one without it), and a DeepSpeed one under
    DeepSpeed on the count that wrote it.

    transformers loads ``pytorch_model_fsdp.bin`` and ``optimizer.bin`` through accelerate's FSDP loaders, which
    need the sharded model (one process: "Checkpoint found ... is only supported when using PyTorch FSDP"); under
    FSDP it looks for ``optimizer.bin`` where a plain checkpoint has ``optimizer.pt``. The full state dict re-shards
    on any count of 2 processes or more. DeepSpeed's ``global_stepN/`` holds one optimizer shard per process;
    without DeepSpeed the Trainer finds no ``optimizer.pt`` and would go on with a fresh optimizer, silently.

    Raises:
        ConfigError: The checkpoint and this run disagree on the backend or, for DeepSpeed, the count.
    """
    if checkpoint is None:
        return
    wrote = len(list(checkpoint.glob("rng_state_*.pth"))) or 1  # the Trainer's RNG state: one file per process
    by_deepspeed = (checkpoint / "latest").is_file()  # DeepSpeed's pointer to its global_stepN/
    by_fsdp = any(checkpoint.glob(FSDP_CHECKPOINT_FILES))
    many = processes.count > 1
    if by_deepspeed or (backend.startswith("deepspeed") and many):
        fits = by_deepspeed and backend.startswith("deepspeed") and wrote == processes.count
        hint = f"resume it with --nproc {wrote} and train.distributed as saved (one optimizer shard per process)"
    else:
        fits = by_fsdp == (backend == "fsdp" and many)
        hint = ("resume it with --nproc 2 or more (any count re-shards it)" if by_fsdp
                else "resume it without FSDP: on one process, or with train.distributed: ddp")
    if not fits:
        saver = "DeepSpeed" if by_deepspeed else "FSDP" if by_fsdp else "DDP"
        saved = f"{saver} on {wrote} processes" if wrote > 1 else "one process"
        run = f"{backend} on {processes.count} processes" if many else "one process"
        raise ConfigError(f"{checkpoint.name} was saved by {saved}; this run is {run}", field="--nproc", hint=hint)


def fsdp_config() -> dict[str, Any]:
    """FSDP2 over each decoder layer (transformers finds the layer class from the model's ``_no_split_modules``);
    checkpoints hold a full state dict, so that they resume on another process count."""
    return {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "state_dict_type": "FULL_STATE_DICT",
            "reshard_after_forward": True, "cpu_ram_efficient_loading": False}


def deepspeed_config(backend: str, *, train: Any, precision: Precision, processes: Processes) -> dict[str, Any]:
    """The DeepSpeed config of ``deepspeed_zero2`` / ``deepspeed_zero3``.

    Batch, accumulation, clipping and precision are written out (not DeepSpeed's ``auto``), so that the config
    says what the run does: ``train_batch_size`` = batch × accumulation × processes; transformers checks each
    against the TrainingArguments when it starts (a mismatch is an error there). Bucket sizes are ``auto``: they
    follow the model's hidden size.
    """
    stage = int(backend[-1])
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": "auto"}
    if stage == 3:
        zero |= {"stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                 "stage3_gather_16bit_weights_on_model_save": True}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": precision.bf16},
        "fp16": {"enabled": precision.fp16},
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "gradient_clipping": train.max_grad_norm,
        "train_batch_size": global_batch(train, processes),
    }


def check_deepspeed(backend: str) -> None:
    """DeepSpeed comes with the ``deepspeed`` extra.

    Raises:
        MissingDependencyError: DeepSpeed is not installed.
    """
    if importlib.util.find_spec("deepspeed") is None:
        raise MissingDependencyError("deepspeed", extra="deepspeed", purpose=f"train.distributed: {backend}")
