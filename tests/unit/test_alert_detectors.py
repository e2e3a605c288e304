"""Anomaly detectors, platform checks, the alert webhook and the alert counts of the store."""

from __future__ import annotations

import math
import time

import pytest
from fixtures.webhook import webhook_receiver

from tuneforge.config import TrainConfig
from tuneforge.config.monitoring import AlertThresholds
from tuneforge.errors import ConfigError
from tuneforge.monitoring.checks import disk_alert, stalled_jobs
from tuneforge.monitoring.detectors import AnomalyDetectors
from tuneforge.monitoring.webhook import send_webhook
from tuneforge.storage.records import JobRecord, JobStatus


def kinds(alerts):
    return [a.kind for a in alerts]


def test_a_nan_loss_alerts_once_until_the_loss_is_finite_again():
    detectors = AnomalyDetectors()
    assert detectors.observe_train(step=1, loss=2.0) == []
    first = detectors.observe_train(step=2, loss=math.nan)
    assert kinds(first) == ["loss_not_finite"] and first[0].step == 2 and first[0].as_dict()["value"] == "nan"
    assert detectors.observe_train(step=3, loss=math.inf) == []  # still diverged: no second alert
    assert detectors.observe_train(step=4, loss=1.0) == []
    assert kinds(detectors.observe_train(step=5, loss=-math.inf)) == ["loss_not_finite"]


def test_a_loss_spike_is_judged_against_the_running_median_after_warm_up():
    detectors = AnomalyDetectors(AlertThresholds(loss_spike_factor=3.0, min_history=3))
    assert detectors.observe_train(step=1, loss=10.0) == []  # too early to judge
    for step, loss in enumerate([2.0, 2.2, 1.8, 2.1], start=2):
        assert detectors.observe_train(step=step, loss=loss) == []
    spike = detectors.observe_train(step=6, loss=7.0)  # median of 10, 2, 2.2, 1.8, 2.1 is 2.1: limit 6.3
    assert kinds(spike) == ["loss_spike"] and spike[0].threshold == pytest.approx(6.3)
    assert detectors.observe_train(step=7, loss=6.0) == []  # under the limit: re-armed, no alert


def test_eval_loss_rising_n_evaluations_in_a_row_is_overfitting():
    detectors = AnomalyDetectors(AlertThresholds(eval_rising=3))
    assert [kinds(detectors.observe_eval(step=s, eval_loss=v)) for s, v in
            [(1, 2.0), (2, 1.5), (3, 1.6), (4, 1.7)]] == [[], [], [], []]  # rose twice
    assert kinds(detectors.observe_eval(step=5, eval_loss=1.8)) == ["eval_loss_rising"]


def test_gradient_explosion_and_throughput_collapse():
    detectors = AnomalyDetectors(AlertThresholds(grad_norm_max=100.0, throughput_drop=0.2, min_history=3))
    for step in range(1, 5):
        assert detectors.observe_train(step=step, grad_norm=5.0, tokens_per_second=1000.0) == []
    both = detectors.observe_train(step=5, grad_norm=500.0, tokens_per_second=150.0)
    assert sorted(kinds(both)) == ["grad_norm_explosion", "throughput_collapse"]
    assert kinds(detectors.observe_train(step=6, grad_norm=math.nan, tokens_per_second=900.0)) == []  # still high
    assert kinds(detectors.observe_train(step=7, grad_norm=1.0, tokens_per_second=100.0)) == ["throughput_collapse"]


def test_the_alert_block_is_validated_with_the_field_named():
    base = {"model": "m", "data": {"train": "t.jsonl"}}
    config = TrainConfig.model_validate({**base, "train": {"on_anomaly": "pause", "alerts": {"loss_spike_factor": 5}}})
    assert config.train.alerts.loss_spike_factor == 5 and config.train.report_to == []
    from tuneforge.config import validate_config

    with pytest.raises(ConfigError) as bad:
        validate_config({**base, "train": {"on_anomaly": "explode"}}, TrainConfig)
    assert "train.on_anomaly" in str(bad.value)
    with pytest.raises(ConfigError) as low:
        validate_config({**base, "train": {"alerts": {"loss_spike_factor": 0.5}}}, TrainConfig)
    assert "loss_spike_factor" in str(low.value)


def test_stalled_jobs_and_low_disk(tmp_path):
    now = time.time()
    moving = JobRecord(id="ftjob-a", project="p", model="m", config={}, status=JobStatus.RUNNING, started_at=now - 5000,
                       progress={"step": 3, "updated_at": now - 10})
    stuck = JobRecord(id="ftjob-b", project="p", model="m", config={}, status=JobStatus.RUNNING, started_at=now - 5000,
                      progress={"step": 7, "updated_at": now - 1000})
    found = stalled_jobs([moving, stuck], now=now, after_seconds=900)
    assert [(job.id, alert.kind, alert.step) for job, alert in found] == [("ftjob-b", "job_stalled", 7)]
    assert disk_alert(tmp_path, min_free_gb=0) is None
    low = disk_alert(tmp_path / "not" / "made", min_free_gb=1e9)  # more than any disk: always low
    assert low.kind == "disk_low" and low.value < low.threshold


def test_the_webhook_retries_a_failing_receiver_with_backoff():
    with webhook_receiver() as receiver:
        receiver.answers = [503, 502]
        started = time.perf_counter()
        assert send_webhook(receiver.url, {"job": "ftjob-1", "kind": "loss_spike"}, retries=3, backoff=0.1)
        assert time.perf_counter() - started >= 0.2  # waited between the tries
        assert receiver.bodies == [{"job": "ftjob-1", "kind": "loss_spike"}] * 3
        receiver.answers = [500] * 5
        assert not send_webhook(receiver.url, {"job": "x"}, retries=1, backoff=0.01)  # gives up, never raises
    assert not send_webhook(receiver.url, {"job": "x"}, retries=1, backoff=0.01)  # nobody listens


def test_platform_checks_report_a_stalled_job_once_as_an_event_and_a_webhook_post(tmp_path):
    from tuneforge.services.alerts import check_platform
    from tuneforge.settings import Settings
    from tuneforge.storage.sql import SqlStore

    with webhook_receiver() as receiver:
        settings = Settings(home=str(tmp_path), stalled_after_seconds=60, min_free_disk_gb=0,
                            alert_webhook_url=receiver.url)
        store = SqlStore(settings.database_url)
        now = time.time()
        store.add_job(JobRecord(id="ftjob-s", project="acme", model="m", config={}, status=JobStatus.RUNNING,
                                started_at=now - 500, progress={"step": 4, "updated_at": now - 120}))
        store.add_job(JobRecord(id="ftjob-q", project="acme", model="m", config={}, status=JobStatus.QUEUED))
        seen: set = set()
        assert [a.kind for a in check_platform(store, settings, seen=seen, now=now)] == ["job_stalled"]
        assert check_platform(store, settings, seen=seen, now=now + 30) == []  # the same stall: reported once
        alerts = [e for e in store.list_events("ftjob-s", limit=10).data if e.type == "alert"]
        assert len(alerts) == 1 and alerts[0].data["step"] == 4 and alerts[0].data["threshold"] == 60
        assert [(b["job"], b["project"], b["kind"]) for b in receiver.bodies] == [("ftjob-s", "acme", "job_stalled")]
        store.close()
