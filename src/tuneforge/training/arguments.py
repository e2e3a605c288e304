"""Map a TrainConfig onto transformers' TrainingArguments (transformers 5 names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneforge.config.models import TrainConfig
from tuneforge.errors import MissingDependencyError

# train.optimizer -> TrainingArguments.optim; the bitsandbytes ones need that package (the qlora extra).
OPTIMIZERS = {"adamw_torch": "adamw_torch", "adamw_torch_fused": "adamw_torch_fused", "adafactor": "adafactor",
              "sgd": "sgd", "adamw_bnb_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "lion": "lion_32bit"}
NEEDS_BITSANDBYTES = ("adamw_bnb_8bit", "paged_adamw_8bit", "lion")

if TYPE_CHECKING:
    from tuneforge.training.precision import Precision
    from tuneforge.training.rundir import RunDir


def training_arguments(config: TrainConfig, precision: Precision, run: RunDir, *, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` (or a TRL config) of a run; checkpoints go to
    ``run.checkpoints``."""
    t = config.train
    eval_strategy = ("steps" if t.eval_steps else "epoch") if has_eval else "no"
    save_strategy, save_steps = ("steps", t.save_steps) if t.save_steps else ("epoch", None)
    early = t.early_stopping_patience is not None
    if early:  # load_best_model_at_end wants saving on the eval schedule
        save_strategy, save_steps = eval_strategy, t.eval_steps
    return dict(
        output_dir=str(run.checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.scheduler if t.scheduler != "constant" else "constant_with_warmup",
        warmup_steps=t.warmup,  # transformers 5: a value below 1 is a fraction of the steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=precision.device == "cpu",
        activation_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        seed=config.seed,
        data_seed=config.seed,
        include_num_input_tokens_seen="non_padding",
        report_to=list(t.report_to),  # the Trainer's own TensorBoard / MLflow callbacks (training.reporting)
        run_name=run_name(run),
        logging_nan_inf_filter=False,  # a NaN loss is logged as NaN, so the anomaly alerts see it
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        neftune_noise_alpha=t.neftune_alpha,
        label_smoothing_factor=t.label_smoothing,
        **optimizer_argument(t.optimizer),
    )


def run_name(run: RunDir) -> str:
    """The run's name in the trackers: its folder, or the job id for a job's ``.../JOB/run`` folder."""
    return run.root.parent.name if run.root.name == "run" else run.root.name


def optimizer_argument(name: str) -> dict[str, str]:
    """``{"optim": ...}`` for ``train.optimizer`` (nothing for 'auto': transformers' default).

    Raises:
        MissingDependencyError: A bitsandbytes optimizer without bitsandbytes installed.
    """
    if name == "auto":
        return {}
    if name in NEEDS_BITSANDBYTES:
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingDependencyError("bitsandbytes", extra="qlora", purpose=f"train.optimizer: {name}")
    return {"optim": OPTIMIZERS[name]}
