"""Leases with a fencing token: a job's writes hold only while the attempt that claimed it still holds it."""

from __future__ import annotations

import pytest

from tuneforge.errors import LeaseLost
from tuneforge.jobs.lease import LeasedStore
from tuneforge.storage.records import (
    CheckpointRecord, EventRecord, JobRecord, JobStatus, JobUpdate, Lease, MetricRecord, ModelRecord, new_id, now,
)
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def event(job_id: str) -> EventRecord:
    return EventRecord(id=new_id("ftevent"), job_id=job_id, level="info", message="step")


def test_a_requeued_or_reclaimed_attempt_writes_nothing(store):
    job = store.add_job(JobRecord(id=new_id("ftjob"), project="p", model="m", config={}, status=JobStatus.QUEUED))
    first = store.claim_job(worker_id="w1")
    mine = Lease(job.id, first.attempts)
    assert first.attempts == 1
    store.add_event(event(job.id), lease=mine)
    store.add_metric(MetricRecord(job_id=job.id, step=1, data={}), lease=mine)
    store.hold_lease(mine)

    assert store.requeue_stale(older_than=now() + 1) == [(job.id, JobStatus.QUEUED)]  # w1 went silent
    with pytest.raises(LeaseLost):  # requeued, not yet claimed: already lost
        store.add_event(event(job.id), lease=mine)
    second = store.claim_job(worker_id="w2")
    assert second.attempts == 2
    writes = [
        lambda: store.add_event(event(job.id), lease=mine),
        lambda: store.add_metric(MetricRecord(job_id=job.id, step=2, data={}), lease=mine),
        lambda: store.add_checkpoint(CheckpointRecord(id=new_id("ftckpt"), job_id=job.id, step=2, path="x"),
                                     lease=mine),
        lambda: store.update_job(job.id, JobUpdate(status=JobStatus.SUCCEEDED), from_states=[JobStatus.RUNNING],
                                 lease=mine),
        lambda: store.add_model(ModelRecord(id="ft:m:p::x", project="p", job_id=job.id, base_model="m", path="x"),
                                lease=mine),
        lambda: store.hold_lease(mine),
    ]
    for write in writes:
        with pytest.raises(LeaseLost, match="attempt 1 no longer holds"):
            write()
    assert len(store.list_events(job.id).data) == 1 and [m.step for m in store.list_metrics(job.id)] == [1]
    assert store.list_checkpoints(job.id).data == [] and store.get_job(job.id).status == JobStatus.RUNNING

    theirs = LeasedStore(store, Lease(job.id, 2))  # the new attempt writes; a step re-run keeps one row
    theirs.add_metric(MetricRecord(job_id=job.id, step=1, data={"train_loss": 0.5}))
    assert theirs.update_job(job.id, JobUpdate(status=JobStatus.SUCCEEDED), from_states=[JobStatus.RUNNING])
    theirs.add_model(ModelRecord(id="ft:m:p::y", project="p", job_id=job.id, base_model="m", path="y"))
    assert [(m.step, m.data) for m in store.list_metrics(job.id)] == [(1, {"train_loss": 0.5})]
    with pytest.raises(LeaseLost):
        LeasedStore(store, mine).add_event(event(job.id))


def test_metrics_of_steps_rerun_after_a_resume_are_kept_once(store):
    job = store.add_job(JobRecord(id=new_id("ftjob"), project="p", model="m", config={}, status=JobStatus.QUEUED))
    for step in (1, 2, 3, 4, 3, 4, 5):  # checkpoint at 2, crash after 4, resumed from the checkpoint
        store.add_metric(MetricRecord(job_id=job.id, step=step, data={"step": step}))
    assert [m.step for m in store.list_metrics(job.id)] == [1, 2, 3, 4, 5]



class _Kind:
    title = "Test job"

    def __init__(self) -> None:
        self.acted: list[dict] = []

    def on_succeeded(self, context, outcome) -> None:
        self.acted.append(outcome.result)


def _finish(store, tmp_path, *, cancel: bool):
    import threading

    from tuneforge.jobs.kinds import JobContext, JobOutcome
    from tuneforge.jobs.process import finish
    from tuneforge.jobs.recorder import JobRecorder
    from tuneforge.settings import Settings
    from tuneforge.storage.records import JobControl

    job = store.add_job(JobRecord(id=new_id("ftjob"), project="p", model="m", config={}, status=JobStatus.QUEUED))
    claimed = store.claim_job(worker_id="w1")
    if cancel:  # what cancel_job writes for a running job; a pause asked afterwards must not replace it
        assert store.update_job(job.id, JobUpdate(control=JobControl.CANCEL), from_states=[JobStatus.RUNNING])
        assert not store.update_job(job.id, JobUpdate(control=JobControl.PAUSE), from_states=[JobStatus.RUNNING],
                                    cancel_pending=False)
    leased = LeasedStore(store, Lease(job.id, claimed.attempts))
    context = JobContext(job=claimed, store=leased, settings=Settings(home=str(tmp_path)), pause=threading.Event(),
                         recorder=JobRecorder(leased, job.id, tmp_path / "run", title="Test job", attempt=1),
                         worker_id="w1")
    kind = _Kind()
    finish(context, kind=kind, outcome=JobOutcome(result={"score": 0.75}, result_files=["file-1"], trained_tokens=9,
                                                  fine_tuned_model="ft:m:p::z"))
    return store.get_job(job.id), kind, [e.message for e in store.list_events(job.id).data]


def test_a_job_cancelled_before_its_final_write_ends_cancelled_with_its_results_kept(store, tmp_path):
    done, kind, messages = _finish(store, tmp_path, cancel=True)
    assert done.status is JobStatus.CANCELLED and done.control is None and done.finished_at is not None
    assert done.result == {"score": 0.75} and done.result_files == ["file-1"] and done.trained_tokens == 9
    assert done.fine_tuned_model is None and kind.acted == []  # no model registered or served from it
    assert any("cancelled as it finished; its results are kept" in m for m in messages)

    finished, kind, messages = _finish(store, tmp_path, cancel=False)
    assert finished.status is JobStatus.SUCCEEDED and finished.fine_tuned_model == "ft:m:p::z"
    assert kind.acted == [{"score": 0.75}] and any("successfully completed" in m for m in messages)
