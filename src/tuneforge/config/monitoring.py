"""The ``train.alerts`` block: thresholds of the anomaly detectors that watch a training run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tuneforge.config.base import StrictModel

AnomalyAction = Literal["warn", "pause", "stop"]
ReportTarget = Literal["tensorboard", "mlflow"]


class AlertThresholds(StrictModel):
    """When a training metric counts as an anomaly (see ``tuneforge.monitoring.detectors``)."""

    loss_spike_factor: float = Field(
        3.0, gt=1, description="Loss spike: a logged loss above this many times the running median of the last "
        "'window' logged losses.")
    window: int = Field(20, ge=3, description="Logged values the running medians (loss, tokens/s) are taken over.")
    min_history: int = Field(
        3, ge=1, description="Logged values needed before the spike and throughput detectors judge (warm-up).")
    eval_rising: int = Field(
        3, ge=2, description="Overfitting: the eval loss rose this many evaluations in a row.")
    grad_norm_max: float = Field(
        1000.0, gt=0, description="Gradient explosion: a gradient norm (before clipping) above this, or not finite.")
    throughput_drop: float = Field(
        0.2, gt=0, lt=1, description="Throughput collapse: tokens/s below this fraction of its running median.")
