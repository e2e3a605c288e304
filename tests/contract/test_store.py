"""The Store contract, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from tuneforge.errors import NotFoundError, StorageError
from tuneforge.storage.records import (
    CheckpointRecord, DatasetRecord, EventRecord, FileRecord, JobControl, JobRecord, JobStatus, JobUpdate,
    MetricRecord, ModelRecord, new_id, now,
)
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


QUEUED, RUNNING, PAUSED = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED


def job(project="p1", priority=0, status=JobStatus.QUEUED, **fields) -> JobRecord:
    return JobRecord(id=new_id("ftjob"), project=project, model="tiny", config={"model": "tiny"},
                     priority=priority, status=status, **fields)


def test_migrations_are_idempotent_and_reach_head(database_url, store):
    from sqlalchemy import text

    SqlStore(database_url).close()  # a second start finds the schema current
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"


def test_keys_files_datasets_and_projects(store):
    store.add_api_key(project="p1", key_hash="a" * 64, prefix="tf-abc")
    assert store.project_of_key("a" * 64) == "p1" and store.project_of_key("b" * 64) is None
    files = [store.add_file(FileRecord(id=new_id("file"), project="p1", filename=f"f{i}.jsonl", purpose="fine-tune",
                                       bytes=i, sha256="0" * 64)) for i in range(5)]
    store.add_file(FileRecord(id=new_id("file"), project="p2", filename="x", purpose="fine-tune", bytes=1, sha256="1" * 64))
    page = store.list_files(project="p1", limit=2)
    assert [f.id for f in page.data] == [files[4].id, files[3].id] and page.has_more
    page = store.list_files(project="p1", after=files[3].id, limit=3)
    assert [f.id for f in page.data] == [files[2].id, files[1].id, files[0].id] and not page.has_more
    assert [f.id for f in store.list_files(project="p1", order="asc", limit=1).data] == [files[0].id]
    assert store.list_files(project="p1", purpose="fine-tune-results").data == []
    with pytest.raises(NotFoundError):
        store.get_file(files[0].id, project="p2")
    assert store.get_file(files[0].id, project="p1").filename == "f0.jsonl"
    store.delete_file(files[0].id, project="p1")
    with pytest.raises(NotFoundError):
        store.get_file(files[0].id)
    ds = store.add_dataset(DatasetRecord(id=new_id("ds"), project="p1", name="d", file_id=files[1].id))
    store.update_dataset(ds.id, format="messages", examples=12)
    assert store.get_dataset(ds.id, project="p1").examples == 12
    assert [d.id for d in store.list_datasets(project="p1").data] == [ds.id]
    with pytest.raises(NotFoundError):
        store.get_dataset(ds.id, project="p2")


def test_job_states_priorities_heartbeats_and_requeue(store):
    low, high, later = job(priority=0), job(priority=5), job(priority=5)
    for j in (low, high, later):
        added = store.add_job(j)
        assert added.seq is not None and j.seq is None  # a copy: records are frozen
    assert [store.queue_position(j.id) for j in (high, later, low)] == [1, 2, 3]
    first = store.claim_job(worker_id="w1")
    assert first.id == high.id and first.status is RUNNING and first.attempts == 1 and first.worker_id == "w1"
    assert store.queue_position(high.id) is None and store.queue_position(low.id) == 2
    # Conditional updates: only from the expected state, only by the holder.
    assert not store.update_job(high.id, JobUpdate(status=JobStatus.CANCELLED), from_states=[QUEUED])
    assert store.heartbeat([high.id, low.id], worker_id="w1") == {high.id: None}
    pause = JobUpdate(control=JobControl.PAUSE)
    assert not store.update_job(high.id, pause, from_states=[RUNNING], held_by="w2")
    assert store.update_job(high.id, pause, from_states=[RUNNING], held_by="w1")
    assert store.heartbeat([high.id], worker_id="w1") == {high.id: JobControl.PAUSE}
    assert store.heartbeat([high.id], worker_id="w2") == {}
    second = store.claim_job(worker_id="w2")
    assert second.id == later.id
    # w1 and w2 die: their jobs go back (the pause asked of w1 is honoured).
    assert sorted(store.requeue_stale(older_than=now() + 1)) == sorted([(high.id, PAUSED), (later.id, QUEUED)])
    assert store.get_job(later.id).status is QUEUED and store.get_job(later.id).worker_id is None
    assert store.count_jobs() == {PAUSED: 1, QUEUED: 2}
    again = store.claim_job(worker_id="w3")
    assert again.id == later.id and again.attempts == 2
    done = JobUpdate(status=JobStatus.SUCCEEDED, finished_at=now(), result={"accuracy": 0.5})
    assert store.update_job(again.id, done, from_states=[RUNNING], held_by="w3")
    assert store.get_job(again.id).result == {"accuracy": 0.5}
    durations = store.job_durations()
    assert len(durations) == 1 and durations[0][0] is JobStatus.SUCCEEDED and durations[0][1] >= 0
    with pytest.raises(NotFoundError):
        store.get_job(low.id, project="p2")
    jobs = store.list_jobs(project="p1", limit=2)
    assert [j.id for j in jobs.data] == [later.id, high.id] and jobs.has_more
    assert [j.id for j in store.list_jobs(project="p1", after=high.id).data] == [low.id]
    assert [j.id for j in store.list_jobs(project="p1", status=PAUSED).data] == [high.id]
    with pytest.raises(ValueError, match="empty JobUpdate"):
        store.update_job(low.id, JobUpdate(), from_states=[QUEUED])


def test_update_job_held_by_and_clearing_fields(store):
    j = store.add_job(job())
    assert store.claim_job(worker_id="w1").id == j.id
    requeue = JobUpdate(status=QUEUED, worker_id=None, control=None)
    assert not store.update_job(j.id, requeue, from_states=[RUNNING], held_by="w2")  # not w2's job
    assert store.get_job(j.id).worker_id == "w1"
    assert store.update_job(j.id, requeue, from_states=[RUNNING], held_by="w1")
    back = store.get_job(j.id)
    assert back.status is QUEUED and back.worker_id is None and back.control is None
    assert not store.update_job(j.id, requeue, from_states=[RUNNING], held_by="w1")  # already done


def test_claim_by_kind(store):
    train = store.add_job(job(priority=9))
    evaluate = store.add_job(job(kind="evaluate"))
    compress = store.add_job(job(kind="compress", priority=1))
    assert store.get_job(train.id).kind == "train"  # the default kind
    assert store.claim_job(worker_id="w", kinds=["serve_update"]) is None
    assert store.claim_job(worker_id="w", kinds=[]) is None
    assert store.claim_job(worker_id="w", kinds={"evaluate", "compress"}).id == compress.id
    assert store.claim_job(worker_id="w", kinds=("evaluate",)).id == evaluate.id
    assert store.claim_job(worker_id="w", kinds=["evaluate", "compress"]) is None
    assert store.claim_job(worker_id="w").id == train.id
    assert [j.kind for j in store.list_jobs(project="p1", kind="evaluate").data] == ["evaluate"]


def test_concurrent_claims_never_hand_out_a_job_twice(database_url, store):
    ids = {store.add_job(job()).id for _ in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        own = SqlStore(database_url, migrate_schema=False)
        while (j := own.claim_job(worker_id=name)) is not None:
            with lock:
                claimed.append(j.id)
        own.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)


def test_events_metrics_checkpoints_models(store):
    j = store.add_job(job(status=RUNNING))
    events = [EventRecord(id=new_id("ftevent"), job_id=j.id, level="info", message=f"m{i}") for i in range(7)]
    for e in events:
        store.add_event(e)
    page = store.list_events(j.id, limit=3)
    assert [e.message for e in page.data] == ["m6", "m5", "m4"] and page.has_more
    rest = store.list_events(j.id, after=page.data[-1].id, limit=4)
    assert [e.message for e in rest.data] == ["m3", "m2", "m1", "m0"] and not rest.has_more
    store.add_metric(MetricRecord(job_id=j.id, step=1, data={"loss": 2.0}))
    store.add_metric(MetricRecord(job_id=j.id, step=2, data={"loss": 1.5}))
    assert [m.data["loss"] for m in store.list_metrics(j.id)] == [2.0, 1.5]
    ck = CheckpointRecord(id=new_id("ftckpt"), job_id=j.id, step=2, path="/x/checkpoint-2", metrics={"train_loss": 1.5})
    assert store.add_checkpoint(ck)
    assert not store.add_checkpoint(CheckpointRecord(id=new_id("ftckpt"), job_id=j.id, step=2, path="/x"))
    assert store.get_checkpoint(ck.id).metrics == {"train_loss": 1.5}
    assert [c.step for c in store.list_checkpoints(j.id).data] == [2]
    store.add_model(ModelRecord(id="ft:tiny:p1::abc", project="p1", job_id=j.id, base_model="tiny", path="/x/adapter"))
    assert [m.id for m in store.list_models(project="p1")] == ["ft:tiny:p1::abc"] and store.list_models(project="p2") == []
    with pytest.raises(NotFoundError):
        store.delete_model("ft:tiny:p1::abc", project="p2")
    store.delete_model("ft:tiny:p1::abc", project="p1")
    store.delete_job(j.id, project="p1")
    assert store.list_events(j.id).data == [] and store.list_metrics(j.id) == []
    with pytest.raises(NotFoundError):
        store.get_checkpoint(ck.id)


def test_concurrent_checkpoints_at_one_step_keep_one(database_url, store):
    j = store.add_job(job(status=RUNNING))
    stores = [SqlStore(database_url, migrate_schema=False) for _ in range(2)]
    for step in range(5):  # several rounds: each one a race of two writers at one step
        barrier, results, errors = threading.Barrier(2), [], []

        def write(own: SqlStore, step: int = step) -> None:
            record = CheckpointRecord(id=new_id("ftckpt"), job_id=j.id, step=step, path=f"/x/checkpoint-{step}")
            barrier.wait()
            try:
                results.append(own.add_checkpoint(record))
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(own,)) for own in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and sorted(results) == [False, True]
    assert sorted(c.step for c in store.list_checkpoints(j.id, limit=10).data) == list(range(5))
    for own in stores:
        own.close()


def test_another_integrity_error_is_a_storage_error(store):
    j = store.add_job(job())
    with pytest.raises(StorageError, match=f"could not add job '{j.id}'"):
        store.add_job(j)  # the same id twice
    orphan = CheckpointRecord(id=new_id("ftckpt"), job_id="ftjob-none", step=1, path="/x")
    with pytest.raises(StorageError, match="could not add the checkpoint"):
        store.add_checkpoint(orphan)  # a foreign key, not the duplicate step: not a quiet False


def test_unreachable_database_is_a_storage_error_with_a_hint():
    from fixtures.postgres import free_port

    url = f"postgresql://tuneforge:s3cret@127.0.0.1:{free_port()}/tuneforge"
    with pytest.raises(StorageError) as caught:
        SqlStore(url)
    error = caught.value
    assert error.message.startswith("could not migrate the database schema")
    assert "reachable" in error.hint and "TUNEFORGE_DATABASE_URL" in error.hint
    assert "127.0.0.1" in error.hint and "s3cret" not in str(error) and "***" in error.hint


def test_a_table_dropped_behind_the_store_is_a_storage_error(tmp_path):
    import sqlite3

    path = tmp_path / "store.db"
    store = SqlStore(f"sqlite:///{path}")
    store.add_job(job())
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE job_events")
    with pytest.raises(StorageError, match="could not list events of job 'x'") as caught:
        store.list_events("x")
    assert "no such table" in caught.value.message and "migrate" in caught.value.hint
    assert str(path) in caught.value.hint
    with pytest.raises(NotFoundError):  # NotFoundError still passes through the session
        store.get_job("ftjob-none")
    store.close()
