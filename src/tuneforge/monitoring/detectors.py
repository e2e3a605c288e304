"""Anomaly detectors over the metrics a training run logs: pure functions of the stream, no Trainer.

Each detector is edge-triggered: it fires once when its condition starts and re-arms when the condition
clears, so a run that stays NaN raises one alert, not one per logged step.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from tuneforge.config.monitoring import AlertThresholds

# Alert kinds, also the ``kind`` label of the ``tuneforge_alerts_total`` metric.
LOSS_NOT_FINITE = "loss_not_finite"
LOSS_SPIKE = "loss_spike"
EVAL_LOSS_RISING = "eval_loss_rising"
GRAD_NORM_EXPLOSION = "grad_norm_explosion"
THROUGHPUT_COLLAPSE = "throughput_collapse"
JOB_STALLED = "job_stalled"
WORKER_LOST = "worker_lost"
DISK_LOW = "disk_low"
TRAINING_KINDS = (LOSS_NOT_FINITE, LOSS_SPIKE, EVAL_LOSS_RISING, GRAD_NORM_EXPLOSION, THROUGHPUT_COLLAPSE)


@dataclass(frozen=True)
class Alert:
    """One anomaly.

    Attributes:
        kind: What went wrong (one of the kinds above).
        value: The observed figure (``nan`` and ``inf`` stay as they are).
        threshold: The limit it crossed, or a description of it.
        message: One line for a person.
        step: The training step, when the alert is about a run.
        data: More figures (the running median a spike is compared with, ...).
    """

    kind: str
    value: float | str | None
    threshold: float | str | None
    message: str
    step: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe fields (a non-finite value is written as its string: JSON has no NaN)."""
        out = asdict(self)
        for key in ("value", "threshold"):
            if isinstance(out[key], float) and not math.isfinite(out[key]):
                out[key] = str(out[key])
        return out


class AnomalyDetectors:
    """Watches the logged training metrics of one run and returns the alerts each new log raises.

    Args:
        thresholds: The ``train.alerts`` block.
    """

    def __init__(self, thresholds: AlertThresholds | None = None) -> None:
        self.t = thresholds or AlertThresholds()
        self.losses: deque[float] = deque(maxlen=self.t.window)
        self.speeds: deque[float] = deque(maxlen=self.t.window)
        self.evals: list[float] = []
        self.active: set[str] = set()  # kinds whose condition holds now (fired once, not again until cleared)

    def observe_train(self, *, step: int, loss: float | None = None, grad_norm: float | None = None,
                      tokens_per_second: float | None = None) -> list[Alert]:
        """Judge one training log (any figure may be missing); returns the new alerts."""
        alerts: list[Alert | None] = []
        if loss is not None:
            alerts += [self._loss_not_finite(step, loss), self._loss_spike(step, loss)]
        if grad_norm is not None:
            alerts.append(self._grad_norm(step, grad_norm))
        if tokens_per_second is not None:
            alerts.append(self._throughput(step, tokens_per_second))
        return [a for a in alerts if a is not None]

    def observe_eval(self, *, step: int, eval_loss: float) -> list[Alert]:
        """Judge one evaluation; returns the new alerts (overfitting, a non-finite eval loss)."""
        self.evals.append(eval_loss)
        recent = self.evals[-(self.t.eval_rising + 1):]
        rising = len(recent) == self.t.eval_rising + 1 and all(b > a for a, b in zip(recent, recent[1:]))
        alert = self._edge(EVAL_LOSS_RISING, rising or not math.isfinite(eval_loss), lambda: Alert(
            EVAL_LOSS_RISING, eval_loss, self.t.eval_rising,
            f"eval loss rose {self.t.eval_rising} evaluations in a row (now {eval_loss:.4g}, from {recent[0]:.4g}) "
            f"at step {step}: the run is overfitting", step, {"eval_losses": recent}))
        return [alert] if alert else []

    def _loss_not_finite(self, step: int, loss: float) -> Alert | None:
        return self._edge(LOSS_NOT_FINITE, not math.isfinite(loss), lambda: Alert(
            LOSS_NOT_FINITE, loss, "finite", f"training loss is {loss} at step {step}: the run diverged "
            "(lower train.learning_rate or train.max_grad_norm, or resume from an earlier checkpoint)", step))

    def _loss_spike(self, step: int, loss: float) -> Alert | None:
        if not math.isfinite(loss):
            return None
        median = statistics.median(self.losses) if len(self.losses) >= self.t.min_history else None
        limit = median * self.t.loss_spike_factor if median is not None else None
        alert = self._edge(LOSS_SPIKE, limit is not None and loss > limit > 0, lambda: Alert(
            LOSS_SPIKE, loss, limit, f"training loss {loss:.4g} is above {self.t.loss_spike_factor:g}x its running "
            f"median {median:.4g} at step {step}", step, {"median": median}))
        self.losses.append(loss)
        return alert

    def _grad_norm(self, step: int, norm: float) -> Alert | None:
        finite = math.isfinite(norm)
        what = f"above {self.t.grad_norm_max:g}" if finite else "not finite"
        return self._edge(GRAD_NORM_EXPLOSION, not finite or norm > self.t.grad_norm_max, lambda: Alert(
            GRAD_NORM_EXPLOSION, norm, self.t.grad_norm_max, f"gradient norm {norm:.4g} is {what} at step {step}", step))

    def _throughput(self, step: int, speed: float) -> Alert | None:
        median = statistics.median(self.speeds) if len(self.speeds) >= self.t.min_history else None
        limit = median * self.t.throughput_drop if median is not None else None
        alert = self._edge(THROUGHPUT_COLLAPSE, limit is not None and speed < limit, lambda: Alert(
            THROUGHPUT_COLLAPSE, speed, limit, f"throughput fell to {speed:.4g} tokens/s, under "
            f"{self.t.throughput_drop:g}x its running median {median:.4g}, at step {step}", step, {"median": median}))
        self.speeds.append(speed)
        return alert

    def _edge(self, kind: str, holds: bool, make: Any) -> Alert | None:
        """The alert ``make()`` builds when ``kind``'s condition starts to hold; None while it holds or is clear."""
        if not holds:
            self.active.discard(kind)
            return None
        if kind in self.active:
            return None
        self.active.add(kind)
        return make()
