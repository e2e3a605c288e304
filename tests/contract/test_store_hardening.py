"""The Store's hardening queries, against SQLite and PostgreSQL: fair claims and per-project limits, API keys
that expire and are revoked, and the references behind disk accounting."""

from __future__ import annotations

import pytest

from tuneforge.errors import NotFoundError
from tuneforge.storage.records import FileRecord, JobRecord, JobStatus, JobUpdate, new_id, now
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def queue(store, project, count, *, priority=0):
    return [store.add_job(JobRecord(id=new_id("ftjob"), project=project, model="m", config={}, priority=priority,
                                    status=JobStatus.QUEUED)) for _ in range(count)]


def test_claims_go_round_robin_across_projects_and_respect_running_limits(store):
    big = queue(store, "big", 6)  # one tenant queues first and most
    small, other = queue(store, "small", 2), queue(store, "other", 2)
    urgent = queue(store, "other", 1, priority=5)
    assert store.queue_position(small[1].id) == 2  # a project sees its own queue only
    assert store.queue_position(small[1].id, across_projects=True) == 9
    order = []
    while (job := store.claim_job(worker_id="w")) is not None:
        order.append(job.project)
        store.update_job(job.id, JobUpdate(status=JobStatus.SUCCEEDED), from_states=[JobStatus.RUNNING])
    assert order[:7] == ["other", "big", "small", "other", "big", "small", "other"]  # priority first, then fair
    assert (order.count("big"), order.count("other")) == (len(big), len(other) + len(urgent))

    queue(store, "big", 3)
    queue(store, "small", 1)
    first = store.claim_job(worker_id="w", max_running_per_project=1)
    second = store.claim_job(worker_id="w", max_running_per_project=1)
    assert {first.project, second.project} == {"big", "small"}
    assert store.claim_job(worker_id="w", max_running_per_project=1) is None  # each project at its limit
    assert store.count_jobs(project="big") == {JobStatus.SUCCEEDED: 6, JobStatus.RUNNING: 1, JobStatus.QUEUED: 2}


def test_keys_expire_are_revoked_and_record_their_last_use(store):
    store.add_api_key(project="acme", key_hash="a" * 64, prefix="tf-aaaa", expires_at=now() - 1)
    store.add_api_key(project="ops", key_hash="b" * 64, prefix="tf-bbbb", is_admin=True)
    expired, admin = store.get_api_key("a" * 64), store.get_api_key("b" * 64)
    assert expired.refusal(now()) == "expired" and admin.refusal(now()) is None and admin.is_admin
    assert store.find_api_key(admin.id).key_hash == "b" * 64 and store.get_api_key("c" * 64) is None
    with pytest.raises(NotFoundError):
        store.find_api_key("key_%%%%")
    assert store.disable_api_key(admin.key_hash, at=now()) and not store.disable_api_key(admin.key_hash, at=now())
    store.touch_api_key(admin.key_hash, at=123.0)
    revoked = store.get_api_key("b" * 64)
    assert revoked.refusal(now()) == "revoked" and revoked.last_used_at == 123.0
    assert [k.project for k in store.list_api_keys()] == ["acme", "ops"] and store.list_api_keys(project="x") == []


def test_references_and_sizes_behind_the_disk_accounting(store):
    for project, sha, size in (("acme", "1" * 64, 100), ("acme", "2" * 64, 50), ("other", "1" * 64, 100)):
        store.add_file(FileRecord(id=new_id("file"), project=project, filename="f.jsonl", purpose="fine-tune",
                                  bytes=size, sha256=sha))
    assert store.file_references("1" * 64) == 2 and store.file_references("3" * 64) == 0
    assert store.file_hashes() == {"1" * 64, "2" * 64}
    assert (store.project_file_bytes("acme"), store.project_file_bytes("nobody")) == (150, 0)
    job = store.add_job(JobRecord(id=new_id("ftjob"), project="acme", model="m", config={}))
    assert store.present_ids("jobs", [job.id, "ftjob-gone"]) == {job.id}
    assert store.present_ids("datasets", ["ds-gone"]) == set()
