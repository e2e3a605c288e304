"""``/health`` (no key needed) and Prometheus ``/metrics`` (queue depth, running jobs, outcomes, durations; alerts,
heartbeat age and free disk from ``monitoring.collectors``; with the admin key, the inference server's requests,
latencies, tokens, batch sizes and loaded adapters)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from tuneforge.api import deps
from tuneforge.monitoring.collectors import AlertCollector
from tuneforge.services import jobs
from tuneforge.services.platform import Platform
from tuneforge.storage.records import FINAL_STATES, ApiKeyRecord, JobStatus

router = APIRouter(tags=["operations"])
DURATION_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)


@router.get("/health")
def health(request: Request) -> dict:
    """Liveness and database reachability."""
    jobs.check_store(request.app.state.platform)
    return {"status": "ok"}


@router.get("/metrics")
def metrics(request: Request, key: ApiKeyRecord = Depends(deps.api_key)) -> Response:
    """Prometheus text format, read from the store at scrape time (all workers' jobs): the key's project's
    jobs, or every project's with an admin key."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(JobCollector(request.app.state.platform, project=None if key.is_admin else key.project))
    registry.register(AlertCollector(request.app.state.platform.store, home=request.app.state.platform.settings.home_dir,
                                     project=None if key.is_admin else key.project))
    if key.is_admin and getattr(request.app.state, "serving", None) is not None:  # model names of every project
        from tuneforge.api.inference_metrics import ServingCollector

        registry.register(ServingCollector(request.app.state.serving))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class JobCollector:
    """Job figures computed from the database, so every server of a deployment reports the same numbers."""

    def __init__(self, platform: Platform, *, project: str | None = None) -> None:
        self.platform, self.project = platform, project

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        counts = jobs.job_counts(self.platform, project=self.project)
        yield GaugeMetricFamily("tuneforge_queue_depth", "Jobs waiting in the queue",
                                value=counts.get(JobStatus.QUEUED, 0))
        yield GaugeMetricFamily("tuneforge_running_jobs", "Jobs running now", value=counts.get(JobStatus.RUNNING, 0))
        by_status = GaugeMetricFamily("tuneforge_jobs", "Jobs by status", labels=["status"])
        for status in JobStatus:
            by_status.add_metric([status.value], counts.get(status, 0))
        yield by_status
        outcomes = CounterMetricFamily("tuneforge_job_outcomes", "Finished jobs by outcome", labels=["status"])
        for status in FINAL_STATES:
            outcomes.add_metric([status.value], counts.get(status, 0))
        yield outcomes
        yield _durations(jobs.job_durations(self.platform, project=self.project), HistogramMetricFamily)


def _durations(durations: list[tuple[JobStatus, float]], family: Any) -> Any:
    histogram = family("tuneforge_job_duration_seconds", "Start to end of finished jobs", labels=["status"])
    for status in FINAL_STATES:
        values = [seconds for s, seconds in durations if s == status]
        buckets = [(str(bound), sum(v <= bound for v in values)) for bound in DURATION_BUCKETS]
        histogram.add_metric([status.value], buckets + [("+Inf", len(values))], sum(values))
    return histogram
