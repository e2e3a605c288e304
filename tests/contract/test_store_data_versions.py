"""The Store contract for versioned data sets, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from tuneforge.errors import NotFoundError
from tuneforge.storage.records import DataVersionRecord, new_id
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def version(sha: str, *, name="chat", project="p1", parent=None, operation="import") -> DataVersionRecord:
    return DataVersionRecord(id=new_id("dver"), project=project, name=name, sha256=sha * 64, format="messages",
                             records=3, operation=operation, stats={"tokens": 12}, params={"source": "a.jsonl"},
                             details={"removed": {"duplicate": [1, 2]}}, parent_id=parent)


def test_versions_are_numbered_kept_once_and_scoped_by_project(store):
    first, created = store.add_data_version(version("a"))
    assert created and first.version == 1 and first.ref == "chat:1" and first.dataset_id
    again, created = store.add_data_version(version("a"))  # the same content: no second version
    assert not created and again.id == first.id and again.version == 1
    second, _ = store.add_data_version(version("b", parent=first.id, operation="clean"))
    assert second.version == 2 and second.parent_id == first.id
    other, _ = store.add_data_version(version("a", project="p2"))  # another project: its own data set
    assert other.version == 1 and other.dataset_id != first.dataset_id

    assert store.get_data_version(project="p1", name="chat").id == second.id  # newest
    got = store.get_data_version(project="p1", name="chat", version=1)
    assert got == first and got.details == {"removed": {"duplicate": [1, 2]}} and got.stats == {"tokens": 12}
    assert store.get_data_version_by_id(second.id, project="p1").ref == "chat:2"
    assert [v.version for v in store.list_data_versions(project="p1", name="chat")] == [1, 2]
    assert [d.name for d in store.list_data_sets(project="p1")] == ["chat"]
    with pytest.raises(NotFoundError):
        store.get_data_version(project="p1", name="chat", version=3)
    with pytest.raises(NotFoundError):
        store.get_data_version(project="p1", name="nope")
    with pytest.raises(NotFoundError):
        store.get_data_version_by_id(second.id, project="p2")
    with pytest.raises(NotFoundError):
        store.list_data_versions(project="p2", name="missing")


def test_concurrent_writers_get_distinct_numbers(store):
    results, errors = [], []

    def add(sha: str) -> None:
        try:
            results.append(store.add_data_version(version(sha, name="race"))[0].version)
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(c,)) for c in "cdefgh"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and sorted(results) == [1, 2, 3, 4, 5, 6]
