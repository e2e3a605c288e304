"""The Trainer callback that feeds the logged metrics to the detectors and acts on ``train.on_anomaly``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from tuneforge.errors import TuneforgeError
from tuneforge.monitoring.detectors import Alert, AnomalyDetectors

if TYPE_CHECKING:
    import threading

    from transformers import TrainerControl, TrainerState, TrainingArguments

AlertSink = Callable[[Alert], None]


class TrainingAnomalyError(TuneforgeError):
    """A run ended by ``train.on_anomaly: stop`` (a job fails with code ``training_anomaly``)."""

    code = "training_anomaly"
    param = "train.on_anomaly"

    def __init__(self, alert: Alert) -> None:
        super().__init__(f"training stopped by an anomaly alert ({alert.kind}): {alert.message}",
                         hint="fix the cause, or set train.on_anomaly: warn to only be told; the run folder keeps "
                         "its checkpoints (resume with --resume)")
        self.alert = alert


class AnomalyMonitor(TrainerCallback):
    """Judges each log of the Trainer with :class:`AnomalyDetectors`; reports and acts on each alert.

    Args:
        detectors: The detectors (with the run's ``train.alerts`` thresholds).
        on_alert: Receives every alert (a job event, a CLI line, the webhook).
        action: ``warn`` (report only), ``pause`` (set ``pause``: the job's pause, or the CLI's stop request,
            checkpoint after the next step), ``stop`` (raise :class:`TrainingAnomalyError`).
        pause: The event that ``pause`` sets; without one, ``pause`` acts as ``stop``.

    Attributes:
        alerts: Every alert raised so far.
    """

    def __init__(self, *, detectors: AnomalyDetectors, on_alert: AlertSink, action: str = "warn",
                 pause: threading.Event | None = None) -> None:
        self.detectors, self.on_alert, self.action, self.pause = detectors, on_alert, action, pause
        self.alerts: list[Alert] = []
        self._step_seconds = 0.0  # time inside training steps since the last log (evaluation excluded)
        self._step_started: float | None = None
        self._tokens_at_log = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._tokens_at_log = state.num_input_tokens_seen

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self._step_started = time.perf_counter()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._step_started is not None:
            self._step_seconds += time.perf_counter() - self._step_started
            self._step_started = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs, step = logs or {}, state.global_step
        alerts: list[Alert] = []
        if "loss" in logs:
            alerts += self.detectors.observe_train(step=step, loss=float(logs["loss"]), grad_norm=_float(logs.get("grad_norm")),
                                                   tokens_per_second=self._throughput(state))
        if "eval_loss" in logs:
            alerts += self.detectors.observe_eval(step=step, eval_loss=float(logs["eval_loss"]))
        for alert in alerts:
            self.alerts.append(alert)
            self.on_alert(alert)
        if alerts:
            self._act(alerts[0])

    def _throughput(self, state: TrainerState) -> float | None:
        tokens = state.num_input_tokens_seen - self._tokens_at_log
        seconds, self._step_seconds = self._step_seconds, 0.0
        self._tokens_at_log = state.num_input_tokens_seen
        return tokens / seconds if seconds > 0 and tokens > 0 else None

    def _act(self, alert: Alert) -> None:
        if self.action == "pause" and self.pause is not None:
            self.pause.set()  # the pause / stop callback checkpoints after the next step
        elif self.action in ("pause", "stop"):
            raise TrainingAnomalyError(alert)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
