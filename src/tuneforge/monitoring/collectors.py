"""Prometheus collectors of the monitoring figures, read from the store at scrape time.

Every server of a deployment reports the same numbers, since the alerts are job events in the database.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tuneforge.monitoring.checks import free_disk_gb
from tuneforge.monitoring.detectors import DISK_LOW, JOB_STALLED, TRAINING_KINDS, WORKER_LOST
from tuneforge.storage.base import Store
from tuneforge.storage.records import JobStatus

ALERT_KINDS = (*TRAINING_KINDS, JOB_STALLED, WORKER_LOST, DISK_LOW)


class AlertCollector:
    """``tuneforge_alerts_total{kind}``, ``tuneforge_heartbeat_age_seconds``, ``tuneforge_disk_free_bytes``.

    Args:
        store: The platform's store.
        home: The folder whose file system's free space is reported.
        project: Count only this project's alerts, and leave out the server-wide gauges (heartbeats, disk);
            ``None`` (an admin key): everything.
    """

    def __init__(self, store: Store, *, home: Path, project: str | None = None) -> None:
        self.store, self.home, self.project = store, home, project

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        counts = self.store.count_alerts(project=self.project)
        alerts = CounterMetricFamily("tuneforge_alerts", "Alerts raised, by kind", labels=["kind"])
        for kind in sorted({*ALERT_KINDS, *counts}):
            alerts.add_metric([kind], counts.get(kind, 0))
        yield alerts
        if self.project is not None:
            return
        yield GaugeMetricFamily("tuneforge_heartbeat_age_seconds",
                                "Seconds since the oldest heartbeat of a running job (0: none running)",
                                value=self._oldest_heartbeat_age())
        yield GaugeMetricFamily("tuneforge_disk_free_bytes", "Free bytes on the file system of the home folder",
                                value=free_disk_gb(self.home) * 1e9)

    def _oldest_heartbeat_age(self) -> float:
        running = self.store.list_jobs(project=None, status=JobStatus.RUNNING, limit=1000).data
        beats = [job.heartbeat_at or job.started_at for job in running if job.heartbeat_at or job.started_at]
        return max(time.time() - min(beats), 0.0) if beats else 0.0
