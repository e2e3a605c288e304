"""The trainer callback of a trial: eval loss to the Optuna trial, pruning, and the per-trial step cap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

if TYPE_CHECKING:
    import optuna
    from transformers import TrainerControl, TrainerState, TrainingArguments


class TrialCallback(TrainerCallback):
    """Reports each evaluation's loss to ``trial``; raises ``TrialPruned`` when the pruner says so.

    The pruner compares intermediate values in the study's direction, so the loss is reported negated
    when the study maximizes (a lower loss is then a higher value, as the objective's score is).

    Args:
        trial: The running Optuna trial.
        maximize: Whether the study maximizes its objective.
        prune: Report and prune (single-objective studies only; Optuna does not prune several objectives).
        max_steps: Stop training after this many optimizer steps (the search's per-trial cap).
    """

    def __init__(self, trial: optuna.Trial, *, maximize: bool, prune: bool = True, max_steps: int | None = None) -> None:
        self.trial, self.sign, self.prune, self.max_steps = trial, -1.0 if maximize else 1.0, prune, max_steps
        self.reports = 0
        self.last_step: int | None = None  # run_training evaluates once more after training, at the same step

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> TrainerControl:
        if self.max_steps is not None and state.global_step >= self.max_steps:
            control.should_training_stop = True
        return control

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        import optuna

        if not metrics or "eval_loss" not in metrics:
            return
        step = state.global_step
        self.trial.set_user_attr("steps", step)
        if not self.prune or step == self.last_step:
            return
        self.last_step = step
        self.trial.report(self.sign * float(metrics["eval_loss"]), step)
        self.reports += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: eval loss {metrics['eval_loss']:.4f}")
