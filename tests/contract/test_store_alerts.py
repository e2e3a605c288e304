"""Store.count_alerts on SQLite and PostgreSQL: alert events per kind (the JSON ``data['kind']``)."""

from __future__ import annotations

import math

import pytest

from tuneforge.monitoring.detectors import Alert
from tuneforge.services.alerts import record_alert
from tuneforge.storage.records import EventRecord, JobRecord, new_id
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def test_the_store_counts_alert_events_by_kind(store):
    assert store.count_alerts() == {}
    job = store.add_job(JobRecord(id="ftjob-x", project="p", model="m", config={}))
    other = store.add_job(JobRecord(id="ftjob-y", project="q", model="m", config={}))
    for job_id, kind in ((job.id, "loss_spike"), (other.id, "loss_spike"), (job.id, "loss_not_finite")):
        record_alert(store, job_id, Alert(kind, math.nan, 3.0, "m", step=1))
    store.add_event(EventRecord(id=new_id("ftevent"), job_id=job.id, level="info", message="no alert", data={"kind": "x"}))
    assert store.count_alerts() == {"loss_spike": 2, "loss_not_finite": 1}
    events = store.list_events(job.id, limit=10).data
    assert [(e.level, e.data["value"]) for e in events if e.type == "alert"] == [("error", "nan"), ("warn", "nan")]
