"""Distill step: a student with fewer decoder layers, initialized from evenly spaced layers of the teacher,
trained on ``alpha * T^2 * KL(teacher || student)`` at temperature T plus ``(1 - alpha) *`` the task's
cross-entropy, both on the answer tokens.

TRL's GKD trainer (``trl.experimental.gkd``) centres on on-policy generation, which is slow on CPUs and needs
its own data pipeline; supervised distillation over tuneforge's tokenized (masked) examples is a small
subclass of transformers' Trainer instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneforge.compression.recipe import DistillStep
from tuneforge.compression.stage import (
    Stage,
    StepContext,
    StepStrategy,
    count_parameters,
    save_transformers,
    step_error,
)
from tuneforge.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


def check(step: DistillStep, config: PretrainedConfig, *, index: int, file: str | None) -> None:
    """Refuse a student as deep as the teacher, and unreadable data, before any work."""
    from tuneforge.compression.steps.structured import FAMILIES
    from tuneforge.data import load_examples

    if config.model_type not in FAMILIES:
        raise step_error(f"distillation builds the student from the teacher's layers for {', '.join(FAMILIES)}, "
                         f"not '{config.model_type}'", context_index=index, file=file, field_name="name",
                         hint="use a prune step (magnitude or wanda) for this model")
    layers = step.layers or max(config.num_hidden_layers // 2, 1)
    if layers >= config.num_hidden_layers:
        raise step_error(f"the student must have fewer layers than the teacher's {config.num_hidden_layers} "
                         f"(got {layers})", context_index=index, file=file, field_name="layers",
                         hint=f"choose 1 to {config.num_hidden_layers - 1}")
    load_examples(step.data)  # a missing or malformed file is a DataError naming it, before any work


def student_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers, the first and the last included."""
    if student_layers == 1:
        return [teacher_layers - 1]
    return sorted({round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)})


def build_student(teacher: PreTrainedModel, layers: int) -> tuple[PreTrainedModel, list[int]]:
    """A copy of ``teacher`` with ``layers`` decoder layers taken from it."""
    from tuneforge.compression.steps.structured import rebuild, select_layers

    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    kept = student_layers(config.num_hidden_layers, layers)
    state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    select_layers(config, state, kept)
    return rebuild(config, state), kept


def apply(stage: Stage, step: DistillStep, context: StepContext) -> Stage:
    """Build the student, train it against the teacher (the stage's model), and save it."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, set_seed

    from tuneforge.data import load_examples, tokenize_examples

    set_seed(context.seed)
    teacher = stage.model.eval()
    student, kept = build_student(teacher, step.layers or max(teacher.config.num_hidden_layers // 2, 1))
    examples, _ = load_examples(step.data)
    rows, _ = tokenize_examples(examples, stage.tokenizer, max_seq_length=step.max_seq_length)
    collator = DataCollatorForSeq2Seq(stage.tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    probe = collator(rows[: step.batch_size])
    kl_before = distillation_kl(student, teacher, probe, temperature=step.temperature)
    trainer = _trainer(student, teacher, step, context, Dataset.from_list(rows), collator)
    output = trainer.train()
    student = trainer.model.eval()
    student.config.use_cache = True  # training turns the KV cache off; generation needs it back
    kl_after = distillation_kl(student, teacher, probe, temperature=step.temperature)
    save_transformers(student, stage.tokenizer, context.workdir)
    total, nonzero = count_parameters(student)
    details = {"teacher_layers": teacher.config.num_hidden_layers, "student_layers": len(kept),
               "initialized_from_layers": kept, "train_loss": round(output.training_loss, 4),
               "steps": trainer.state.global_step, "kl_to_teacher_before": round(kl_before, 4),
               "kl_to_teacher_after": round(kl_after, 4)}
    return Stage(student, stage.tokenizer, context.workdir, "transformers fp32, distilled", total, nonzero,
                 ["cpu", "cuda"], details)


def distillation_kl(
    student: PreTrainedModel, teacher: PreTrainedModel, batch: dict[str, torch.Tensor], *, temperature: float
) -> float:
    """Mean KL(teacher || student) per answer token at ``temperature`` on one batch."""
    import torch

    with torch.inference_mode():
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        return float(kl_loss(student(**inputs).logits, teacher(**inputs).logits, batch["labels"], temperature))


def kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(teacher || student) per answer token, at ``temperature`` (logits ``[b, t, vocab]``, labels ``[b, t]``)."""
    import torch.nn.functional as F

    mask = labels[:, 1:] != IGNORE_INDEX  # [b, t-1]: position t predicts token t + 1
    s = F.log_softmax(student_logits[:, :-1][mask].float() / temperature, dim=-1)  # [n, vocab]
    t = F.log_softmax(teacher_logits[:, :-1][mask].float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean")


def _trainer(student: Any, teacher: Any, step: DistillStep, context: StepContext, data: Any, collator: Any) -> Any:
    import torch
    from transformers import Trainer, TrainingArguments

    from tuneforge.training.callbacks import ProgressReporter
    from tuneforge.training.precision import resolve_precision

    class DistillationTrainer(Trainer):
        """Trainer whose loss mixes the task's cross-entropy with KL to the frozen teacher."""

        def compute_loss(self, model: Any, inputs: dict, return_outputs: bool = False, **kwargs: Any) -> Any:
            outputs = model(**inputs)
            with torch.no_grad():
                teacher_logits = teacher(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            kl = kl_loss(outputs.logits, teacher_logits, inputs["labels"], step.temperature)
            loss = step.alpha * step.temperature**2 * kl + (1 - step.alpha) * outputs.loss
            return (loss, outputs) if return_outputs else loss

    precision = resolve_precision("auto")
    teacher.to(precision.device)
    arguments = TrainingArguments(
        output_dir=str(context.scratch / "checkpoints"), num_train_epochs=step.epochs, max_steps=step.max_steps or -1,
        learning_rate=step.learning_rate, per_device_train_batch_size=step.batch_size, lr_scheduler_type="cosine",
        warmup_steps=0.05, logging_steps=5, save_strategy="no", report_to=[], disable_tqdm=True, seed=context.seed,
        data_seed=context.seed, bf16=precision.bf16, fp16=precision.fp16, use_cpu=precision.device == "cpu",
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, remove_unused_columns=False,
    )
    trainer = DistillationTrainer(model=student, args=arguments, train_dataset=data, data_collator=collator,
                                  callbacks=[ProgressReporter(context.progress, Path(context.scratch) / "metrics.jsonl")])
    from tuneforge.training.run import quiet_trainer

    quiet_trainer(trainer)
    return trainer


DISTILL: StepStrategy[DistillStep] = StepStrategy(check, apply)
