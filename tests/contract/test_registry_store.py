"""The model registry's part of the Store contract, against SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from tuneforge.errors import ConflictError, NotFoundError
from tuneforge.storage.records import ModelVersionRecord, VersionStatus, new_id, now
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def store(database_url):
    s = SqlStore(database_url)
    yield s
    s.close()


def version(name="bot", project="p1", sha="a" * 64, **fields) -> ModelVersionRecord:
    return ModelVersionRecord(id=new_id("mv"), project=project, name=name, kind="adapter", artifact_path="/x",
                              artifact_sha256=sha, base_model="tiny", size_bytes=10, created_by="me", **fields)


def test_versions_are_numbered_per_project_and_name(store):
    first, second = store.add_model_version(version()), store.add_model_version(version(dataset_sha256="d" * 64))
    other = store.add_model_version(version(name="other"))
    elsewhere = store.add_model_version(version(project="p2"))
    assert (first.version, second.version, other.version, elsewhere.version) == (1, 2, 1, 1)
    assert [v.version for v in store.list_model_versions(project="p1", name="bot")] == [1, 2]
    assert [v.ref for v in store.list_model_versions(project="p1", dataset_sha256="d" * 64)] == ["bot:2"]
    assert len(store.list_model_versions(project=None, artifact_sha256="a" * 64)) == 4
    store.add_model_version(version(name="tuned", job_id="ftjob-1", fine_tuned_model="ft:tiny:p1::abc"))
    assert [v.ref for v in store.list_model_versions(project="p1", job_id="ftjob-1")] == ["tuned:1"]
    assert [v.ref for v in store.list_model_versions(project="p1", fine_tuned_model="ft:tiny:p1::abc")] == ["tuned:1"]
    assert [m.name for m in store.list_registered_models(project="p1")] == ["bot", "other", "tuned"]
    assert store.get_registered_model(project="p1", name="bot").latest_version == 2
    with pytest.raises(NotFoundError):
        store.get_model_version(project="p2", name="bot", version=2)
    with pytest.raises(NotFoundError):
        store.get_registered_model(project="p2", name="other")
    got = store.get_model_version(project="p1", name="bot", version=2)
    assert got == second and got.status is VersionStatus.READY


def test_scores_merge_and_pruning_keeps_the_row(store):
    store.add_model_version(version(scores={"training": {"eval_loss": 1.0}}))
    store.update_model_version(project="p1", name="bot", version=1, scores={"qa": {"exact_match": 0.5}})
    pruned = store.update_model_version(project="p1", name="bot", version=1, pruned_at=now())
    assert pruned.scores == {"training": {"eval_loss": 1.0}, "qa": {"exact_match": 0.5}}
    assert pruned.status is VersionStatus.PRUNED and pruned.pruned_at is not None


def test_alias_moves_are_recorded_and_rollback_walks_back(store):
    for _ in range(4):
        store.add_model_version(version())
    for target in (1, 2, 3):
        store.move_model_alias(project="p1", name="bot", alias="production", version=target, actor="alice")
    assert [(a.alias, a.version) for a in store.list_model_aliases(project="p1")] == [("production", 3)]
    back = store.rollback_model_alias(project="p1", name="bot", alias="production", actor="bob")
    assert (back.from_version, back.to_version, back.action, back.actor) == (3, 2, "rollback", "bob")
    assert store.rollback_model_alias(project="p1", name="bot", alias="production", actor="bob").to_version == 1
    with pytest.raises(ConflictError):  # the first deploy has nothing before it
        store.rollback_model_alias(project="p1", name="bot", alias="production", actor="bob")
    store.move_model_alias(project="p1", name="bot", alias="production", version=4, actor="alice")
    assert store.rollback_model_alias(project="p1", name="bot", alias="production", actor="bob").to_version == 1
    moves = store.list_alias_moves(project="p1", name="bot", alias="production")
    assert [(m.from_version, m.to_version) for m in moves] == [(None, 1), (1, 2), (2, 3), (3, 2), (2, 1), (1, 4), (4, 1)]
    store.update_model_version(project="p1", name="bot", version=2, pruned_at=now())
    with pytest.raises(ConflictError):
        store.move_model_alias(project="p1", name="bot", alias="staging", version=2, actor="alice")
    with pytest.raises(NotFoundError):
        store.move_model_alias(project="p1", name="bot", alias="staging", version=9, actor="alice")
    with pytest.raises(NotFoundError):
        store.rollback_model_alias(project="p1", name="bot", alias="staging", actor="alice")
    with pytest.raises(NotFoundError):
        store.move_model_alias(project="p2", name="bot", alias="production", version=1, actor="mallory")
    deleted = store.move_model_alias(project="p1", name="bot", alias="production", version=None, actor="alice")
    assert (deleted.from_version, deleted.to_version, deleted.action) == (1, None, "delete")
    assert store.list_model_aliases(project="p1", name="bot") == []


def test_concurrent_registrations_and_alias_moves_lose_nothing(database_url, store):
    store.add_model_version(version())
    stores = [SqlStore(database_url, migrate_schema=False) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors = []

    def work(index: int, own: SqlStore) -> None:
        try:
            barrier.wait()
            own.add_model_version(version(name="fresh"))  # the first versions of a new name, all at once
            for _ in range(3):
                added = own.add_model_version(version())
                own.move_model_alias(project="p1", name="bot", alias="production", version=added.version,
                                     actor=f"w{index}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for own in stores:
        own.close()
    assert errors == []
    assert [v.version for v in store.list_model_versions(project="p1", name="bot")] == list(range(1, 14))
    assert [v.version for v in store.list_model_versions(project="p1", name="fresh")] == [1, 2, 3, 4]
    moves = store.list_alias_moves(project="p1", name="bot")
    assert len(moves) == 12 and moves[0].from_version is None
    assert all(later.from_version == earlier.to_version for earlier, later in zip(moves, moves[1:]))
    assert store.list_model_aliases(project="p1", name="bot")[0].version == moves[-1].to_version


def test_an_aliased_version_cannot_be_marked_pruned(store):
    store.add_model_version(version())
    store.move_model_alias(project="p1", name="bot", alias="production", version=1, actor="alice")
    with pytest.raises(ConflictError):
        store.update_model_version(project="p1", name="bot", version=1, pruned_at=now())
    assert store.get_model_version(project="p1", name="bot", version=1).status is VersionStatus.READY
