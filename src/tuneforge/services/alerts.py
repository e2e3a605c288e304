"""Alerts wired into the platform: a job event, the webhook, the anomaly callback of a run, platform checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tuneforge.monitoring.callback import AlertSink, AnomalyMonitor
from tuneforge.monitoring.checks import disk_alert, stalled_jobs
from tuneforge.monitoring.detectors import Alert, AnomalyDetectors
from tuneforge.progress import ProgressCallback, ProgressEvent, ProgressKind
from tuneforge.storage.base import Store
from tuneforge.storage.records import EventRecord, JobStatus, new_id

if TYPE_CHECKING:
    from tuneforge.config import TrainConfig
    from tuneforge.jobs.kinds import JobContext
    from tuneforge.settings import Settings

log = logging.getLogger("tuneforge.alerts")
ERROR_KINDS = ("loss_not_finite", "worker_lost", "disk_low")  # alerts written at level 'error'


def alert_payload(alert: Alert, *, job: str | None, project: str | None = None) -> dict[str, Any]:
    """The webhook's JSON body: ``job``, ``kind``, ``value``, ``threshold``, ``message``, ``step``, ..."""
    return {"job": job, "project": project, **alert.as_dict(), "time": time.time()}


def record_alert(store: Store, job_id: str, alert: Alert) -> None:
    """Add the alert to the job's events (``type: alert``; the API, the CLI's logs and /metrics read it)."""
    level = "error" if alert.kind in ERROR_KINDS else "warn"
    store.add_event(EventRecord(id=new_id("ftevent"), job_id=job_id, level=level, type="alert",
                                message=f"Alert ({alert.kind}): {alert.message}", data=alert.as_dict()))


def notify(settings: Settings, alert: Alert, *, job: str | None, project: str | None = None) -> bool:
    """POST the alert to ``settings.alert_webhook_url`` when one is set; returns whether it was delivered."""
    if not settings.alert_webhook_url:
        return False
    from tuneforge.monitoring.webhook import send_webhook

    return send_webhook(settings.alert_webhook_url, alert_payload(alert, job=job, project=project))


def anomaly_monitor(config: TrainConfig, *, on_alert: AlertSink, pause: threading.Event | None) -> AnomalyMonitor:
    """The run's anomaly callback: ``train.alerts`` thresholds, ``train.on_anomaly`` action."""
    return AnomalyMonitor(detectors=AnomalyDetectors(config.train.alerts), on_alert=on_alert,
                          action=config.train.on_anomaly, pause=pause)


def job_monitor(context: JobContext, config: TrainConfig) -> AnomalyMonitor:
    """The anomaly callback of a training job: alerts become job events and webhook calls; pause is the job's."""
    job = context.job

    def on_alert(alert: Alert) -> None:
        record_alert(context.store, job.id, alert)
        notify(context.settings, alert, job=job.id, project=job.project)

    return anomaly_monitor(config, on_alert=on_alert, pause=context.pause)


def cli_monitor(config: TrainConfig, *, settings: Settings, progress: ProgressCallback,
                stop: threading.Event | None) -> AnomalyMonitor:
    """The anomaly callback of a CLI run: alerts are warning lines; ``pause`` stops it resumably (``stop``)."""
    def on_alert(alert: Alert) -> None:
        progress(ProgressEvent(ProgressKind.MESSAGE, f"warning: alert ({alert.kind}): {alert.message}",
                               data={"warning": "alert", "alert": alert.as_dict()}))
        notify(settings, alert, job=config.output_dir)

    return anomaly_monitor(config, on_alert=on_alert, pause=stop)


def check_platform(store: Store, settings: Settings, *, seen: set[tuple[str, Any]], now: float) -> list[Alert]:
    """One round of the platform checks: stalled running jobs (once per stall), free disk under home.

    Args:
        store: The store.
        settings: ``stalled_after_seconds``, ``min_free_disk_gb``, the webhook.
        seen: Stalls already reported (``(job_id, last progress time)``); updated in place.
        now: The current time (epoch seconds).

    Returns:
        The alerts raised this round.
    """
    running = store.list_jobs(project=None, status=JobStatus.RUNNING, limit=1000).data
    raised = []
    for job, alert in stalled_jobs(running, now=now, after_seconds=settings.stalled_after_seconds):
        if (job.id, alert.data["since"]) in seen:
            continue
        seen.add((job.id, alert.data["since"]))
        record_alert(store, job.id, alert)
        notify(settings, alert, job=job.id, project=job.project)
        raised.append(alert)
    disk = disk_alert(settings.home_dir, min_free_gb=settings.min_free_disk_gb)
    if disk is not None and ("disk", None) not in seen:
        seen.add(("disk", None))  # once per server start: it stays low until someone frees space
        log.warning("%s", disk.message)
        notify(settings, disk, job=None)
        raised.append(disk)
    return raised


def start_platform_monitor(store: Store, settings: Settings, *, stop: threading.Event,
                           clock: Callable[[], float] = time.time) -> threading.Thread:
    """Run :func:`check_platform` every ``settings.monitor_seconds`` in a daemon thread until ``stop`` is set."""
    def loop() -> None:
        seen: set[tuple[str, Any]] = set()
        while not stop.wait(settings.monitor_seconds):
            try:
                check_platform(store, settings, seen=seen, now=clock())
            except Exception:  # noqa: BLE001 - a database hiccup must not end the monitor
                log.exception("platform checks failed; retrying")

    thread = threading.Thread(target=loop, name="tuneforge-monitor", daemon=True)
    thread.start()
    return thread
