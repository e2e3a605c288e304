"""run_training(): the one entry point that turns a TrainConfig into a trained model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneforge.config.models import TrainConfig
from tuneforge.data.mixing import source_lines
from tuneforge.data.templates import apply_chat_template_choice
from tuneforge.data.tokenize import overlong_message
from tuneforge.errors import Interrupted
from tuneforge.models.loading import load_tokenizer, model_type_of
from tuneforge.models.resolve import resolve_model
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind, no_progress
from tuneforge.storage.files import atomic_write_text
from tuneforge.storage.rundir import COMPLETED, RunDir, config_hash, prepare_run_dir
from tuneforge.training.arguments import training_arguments
from tuneforge.training.callbacks import ProgressReporter, StopOnRequest
from tuneforge.training.distributed import (
    Processes, any_process, check_resume, distributed_arguments, gather_from_processes, global_batch, global_batch_line,
    join_processes, shard_on_cpu, wait_for_everyone,
)
from tuneforge.training.methods import PrepareContext, get_method
from tuneforge.training.outputs import peak_memory_mb, save_outputs
from tuneforge.training.precision import resolve_precision
from tuneforge.training.reporting import point_trackers, prepare_trackers
from tuneforge.training.speed import prepare_for_speed, speed_arguments, speed_callbacks
from tuneforge.training.tasks import TrainerParts, get_task, peft_task_type

if TYPE_CHECKING:
    import threading

    from tuneforge.settings import Settings

FEW_EXAMPLES = 10  # the server refuses training files with fewer (api.openai.file_checks.MIN_EXAMPLES)


@dataclass
class TrainResult:
    """What a finished run produced.

    Attributes:
        output_dir: The run directory.
        summary: The content of ``summary.json``.
        model_path: The adapter folder, or the full model folder.
    """

    output_dir: Path
    summary: dict[str, Any]
    model_path: Path


def run_training(
    config: TrainConfig,
    *,
    settings: Settings,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    extra_callbacks: Sequence[Any] = (),
    stop: threading.Event | None = None,
    provenance: dict[str, Any] | None = None,
    fence: Callable[[], None] | None = None,
) -> TrainResult:
    """Fine-tune a model as ``config`` says and write the run directory.

    Args:
        config: The validated training config.
        settings: Where models are cached (``model_cache_dir``, for builtin and GGUF models).
        resume: Continue from the newest checkpoint in ``output_dir``.
        overwrite: Replace a run that ``output_dir`` already holds.
        progress: Receives stage, step and metrics events.
        extra_callbacks: More ``TrainerCallback`` objects (the job runner's pause control).
        stop: When set (by the caller's Ctrl-C / SIGTERM handler), training ends after the current step
            with a checkpoint of that step, and :class:`Interrupted` is raised.
        provenance: Written to the run folder's ``provenance.json`` beside ``config.yaml`` (see
            ``services.runs.collect_provenance``).
        fence: Called right before each append to ``metrics.jsonl`` (a platform job's lease check: it raises, or
            ends the process, once another attempt holds the job).

    Returns:
        The run's outputs.

    Raises:
        ConflictError: ``output_dir`` holds another or a finished run (see ``--overwrite``).
        DataError / ConfigError / NotFoundError: Bad data, an impossible config, a missing model;
            all raised before the first training step.
        Interrupted: ``stop`` was set; the run folder holds a checkpoint of ``step`` and can be resumed.
    """
    from transformers import set_seed

    run = RunDir(Path(config.output_dir))
    config_dict = config.model_dump(mode="json")
    digest = config_hash(config_dict)
    precision = resolve_precision(config.train.precision)
    processes = join_processes(device=precision.device)  # one process without a launcher
    sharding = distributed_arguments(config.train, precision=precision, processes=processes)
    if not processes.is_main:
        progress = _stages_only(progress)  # rank 0 alone reports, logs and writes the run folder
    checkpoint = _prepare(run, digest=digest, resume=resume, overwrite=overwrite, processes=processes,
                          progress=progress)
    check_resume(checkpoint, backend=config.train.distributed, processes=processes)

    progress(ProgressEvent(ProgressKind.STAGE, f"resolving model {config.model}"))
    resolved = resolve_model(config.model, cache_dir=settings.model_cache_dir)
    model_type = model_type_of(resolved.path)
    tokenizer = load_tokenizer(resolved.path)
    apply_chat_template_choice(tokenizer, config.data.chat_template)  # saved with the adapter

    task = get_task(config.task.name)
    progress(ProgressEvent(ProgressKind.STAGE, "reading data"))
    data = task.build_data(config, tokenizer)
    _announce_data(data, config=config, progress=progress)
    progress(ProgressEvent(ProgressKind.MESSAGE, global_batch_line(config.train, processes),
                           data={"global_batch_size": global_batch(config.train, processes),
                                 "processes": processes.count}))

    prepare_trackers(config, run)
    strategy = get_method(config.method.name)
    set_seed(config.seed)
    quantization = strategy.quantization(config.method, precision.compute_dtype)
    progress(ProgressEvent(ProgressKind.STAGE, f"loading {model_type} model ({precision.name}, {config.method.name})"))
    model = task.load_model(resolved.path, config, data, quantization)
    context = PrepareContext(
        model_type=model_type,
        gradient_checkpointing=config.train.gradient_checkpointing,
        total_steps=total_steps(config.train, math.ceil(len(data.train) / processes.count)),
        task_type=peft_task_type(model),
    )
    model = strategy.prepare(model, config.method, context)
    zero3 = processes.count > 1 and config.train.distributed == "deepspeed_zero3"
    model = prepare_for_speed(model, config.train.speed, precision=precision, trains_adapter=strategy.trains_adapter,
                              gathers_per_module=zero3)
    trainable, total = _parameter_counts(model)

    if processes.is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config, yaml.safe_dump(config_dict, sort_keys=False))
        if provenance is not None:
            run.write_provenance(provenance)
        run.write_marker(config_hash=digest, status="running", base_model=str(resolved.path), model=config.model,
                         method=config.method.name, task=config.task.name, model_type=model_type)
    reporter = ProgressReporter(progress, run.metrics if processes.is_main else None, fence=fence)
    stopper = StopOnRequest(stop, agree=any_process if processes.count > 1 else None) if stop is not None else None
    callbacks: list[Any] = [reporter, *strategy.callbacks(model, config.method), *extra_callbacks,
                            *speed_callbacks(model, config.train.speed, precision=precision)]
    callbacks += [stopper] if stopper else []
    if config.train.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.train.early_stopping_patience))
    trainer = task.build_trainer(TrainerParts(
        config=config, model=model, tokenizer=tokenizer, data=data, callbacks=callbacks,
        arguments={**training_arguments(config, precision, run, has_eval=data.eval is not None),
                   **sharding, **speed_arguments(config.train.speed, task=config.task.name)},
        optimizer=strategy.optimizer(model, config.method, config.train),
    ))
    quiet_trainer(trainer)
    shard_on_cpu(trainer)
    point_trackers(trainer, run)
    started = time.perf_counter()
    train_output = _fit(trainer, run=run, checkpoint=checkpoint, stopper=stopper, writes=processes.is_main)
    runtime = time.perf_counter() - started
    process_tokens = gather_from_processes(getattr(trainer, "process_tokens", None))  # causal-LM tasks count them

    eval_loss = _final_eval_loss(trainer, reporter) if data.eval is not None else None
    summary = {
        "model": config.model,
        "base_model": str(resolved.path),
        "method": config.method.name,
        "precision": precision.name,
        "device": precision.device,
        "task": config.task.name,
        "data_format": data.data_format,
        "dataset": data.stats,
        "train_loss": train_output.training_loss,
        "final_loss": reporter.last_loss,
        "eval_loss": eval_loss,
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "runtime_seconds": round(runtime, 2),
        "trained_tokens": trained_tokens(data.stats, trainer.state.epoch),
        "input_tokens": int(trainer.state.num_input_tokens_seen),
        "tokens_per_second": round(reporter.tokens_per_second(trainer.state), 2),
        "peak_memory_mb": peak_memory_mb(precision.device),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "resumed_from": checkpoint.name if checkpoint else None,
        "seed": config.seed,
        "processes": processes.count,
        "global_batch_size": global_batch(config.train, processes),
        "distributed": config.train.distributed if processes.count > 1 else None,
        # each process's training tokens (real, and padded: computed on); train.speed.balance_processes evens them
        "tokens_per_process": [p["tokens"] for p in process_tokens] if process_tokens[0] else None,
        "padded_tokens_per_process": [p["padded_tokens"] for p in process_tokens] if process_tokens[0] else None,
        "label_tokens_per_process": [p["label_tokens"] for p in process_tokens] if process_tokens[0] else None,
        "label_only_loss": bool(getattr(trainer, "label_only", False)),  # the speed switch ran (not stepped aside)
    }
    progress(ProgressEvent(ProgressKind.STAGE, "saving outputs"))
    model_path = _save(trainer, tokenizer, run, config=config, summary=summary, processes=processes,
                       trains_adapter=strategy.trains_adapter)
    progress(ProgressEvent(ProgressKind.SUMMARY, data=summary))
    return TrainResult(output_dir=run.root, summary=summary, model_path=model_path)


def _final_eval_loss(trainer: Any, reporter: ProgressReporter) -> float:
    """The eval loss of the final weights: the Trainer's own eval at the last step if it ran one, else one more.

    Evaluating again would log (``metrics.jsonl``) and report the same figure twice.
    """
    if reporter.last_eval is not None and reporter.last_eval[0] == trainer.state.global_step:
        return reporter.last_eval[1]
    return trainer.evaluate()["eval_loss"]


def trained_tokens(stats: dict[str, Any], epochs: float | None) -> int | None:
    """Tokens trained on: the tokens that carry a loss (``stats['trained_tokens']``, one pass) times the epochs run.

    ``None`` for tasks without a per-token loss (classification, preference pairs). The data line of a run
    ("N trained per epoch") is the same figure for one epoch; ``input_tokens`` counts every token fed.
    """
    per_epoch = stats.get("trained_tokens")
    return None if not per_epoch else round(per_epoch * (epochs or 0.0))


def _stages_only(progress: ProgressCallback) -> ProgressCallback:
    """What a process other than rank 0 reports: stages alone (the CLI arms its Ctrl-C handling at the training
    stage, and shows nothing of these processes)."""
    def forward(event: ProgressEvent) -> None:
        if event.kind is ProgressKind.STAGE:
            progress(event)

    return forward


def _prepare(run: RunDir, *, digest: str, resume: bool, overwrite: bool, processes: Processes,
             progress: ProgressCallback) -> Path | None:
    """Rank 0 checks (or, with ``overwrite``, clears) the run folder; the others then find the same checkpoint.

    A refusal on rank 0 ends that process; the launcher then stops the others.
    """
    checkpoint = None
    if processes.is_main:
        checkpoint = prepare_run_dir(run, digest=digest, resume=resume, overwrite=overwrite)
        _announce_resume(checkpoint, resume=resume, progress=progress)
    wait_for_everyone()
    if not processes.is_main and resume:
        checkpoint = run.latest_checkpoint()
    return checkpoint


def _save(trainer: Any, tokenizer: Any, run: RunDir, *, config: TrainConfig, summary: dict[str, Any],
          processes: Processes, trains_adapter: bool) -> Path:
    """Rank 0 writes the adapter or model, summary and card; under FSDP / ZeRO-3 every process first helps
    gather the full weights (a collective)."""
    target = run.adapter if trains_adapter else run.model
    state_dict = None
    if processes.count > 1 and config.train.distributed != "ddp":
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # ZeRO-3 gathers through its engine
    if processes.is_main:
        model = trainer.accelerator.unwrap_model(trainer.model)
        target = save_outputs(model, tokenizer, run, config=config, summary=summary, trains_adapter=trains_adapter,
                              state_dict=state_dict)
        run.write_marker(status=COMPLETED)
    wait_for_everyone()
    return target


def _announce_resume(checkpoint: Path | None, *, resume: bool, progress: ProgressCallback) -> None:
    if checkpoint is not None:
        progress(ProgressEvent(ProgressKind.MESSAGE, f"resuming from {checkpoint.name}"))
    elif resume:
        progress(ProgressEvent(ProgressKind.MESSAGE, "no checkpoint to resume from: starting from the beginning"))


def _announce_data(data: Any, *, config: TrainConfig, progress: ProgressCallback) -> None:
    progress(ProgressEvent(ProgressKind.DATASET, data={"format": data.data_format, **data.stats}))
    for line in source_lines(data.stats.get("sources", []), split=config.data.eval_split):
        progress(ProgressEvent(ProgressKind.MESSAGE, line))
    overlong = overlong_message(data.stats, max_seq_length=config.train.max_seq_length)
    if overlong:
        progress(ProgressEvent(ProgressKind.MESSAGE, f"warning: {overlong}",
                               data={"warning": "overlong", "records": data.stats["overlong_records"]}))
    examples = len(data.train)
    if examples < FEW_EXAMPLES:
        progress(ProgressEvent(
            ProgressKind.MESSAGE,
            f"warning: only {examples} training example(s); this trains, but the server refuses fine-tuning "
            f"files with fewer than {FEW_EXAMPLES} examples, and so few rarely generalize",
            data={"warning": "few_examples", "examples": examples},
        ))


def _fit(trainer: Any, *, run: RunDir, checkpoint: Path | None, stopper: StopOnRequest | None, writes: bool) -> Any:
    """``trainer.train()``; a failed or stopped run is marked interrupted, so that ``--resume`` continues it.

    Raises:
        Interrupted: ``stopper`` ended training early (after saving a checkpoint of that step).
    """
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException:
        if writes:
            run.write_marker(status="interrupted")
        raise
    if stopper is not None and stopper.stopped_at is not None:
        if writes:
            run.write_marker(status="interrupted")
        latest = run.latest_checkpoint()
        raise Interrupted(step=stopper.stopped_at, checkpoint=latest.name if latest else None)
    return output


def _parameter_counts(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def total_steps(train: Any, examples: int) -> int:
    """Optimizer steps of a run (one device): ``max_steps``, else epochs over the batches."""
    if train.max_steps:
        return train.max_steps
    per_epoch = max(math.ceil(examples / train.batch_size) // train.gradient_accumulation_steps, 1)
    return math.ceil(per_epoch * train.epochs)


def quiet_trainer(trainer: Any) -> None:
    """Drop the Trainer's own console output: tuneforge reports progress through its callback."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback as HfProgress

    for noisy in (PrinterCallback, HfProgress):
        trainer.remove_callback(noisy)

