"""Optuna's storage opened by several processes at once on a database that has no study tables yet (trial
processes starting together): each one opens it, none fails on the other's schema creation."""

from __future__ import annotations

import multiprocessing

import pytest

from tuneforge.settings import Settings

pytest.importorskip("optuna")


def _open(home: str, database_url: str, start, results) -> None:
    from tuneforge.hpo.study import open_storage

    start.wait()
    try:
        open_storage(Settings(home=home, database_url=database_url))
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def open_at_once(home: str, database_url: str, processes: int = 4) -> list[str]:
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_open, args=(home, database_url, start, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes


def test_processes_opening_a_new_sqlite_study_storage_at_once_all_succeed(tmp_path):
    outcomes = open_at_once(str(tmp_path), f"sqlite:///{tmp_path / 'tuneforge.db'}")
    assert outcomes == ["ok"] * 4
    assert (tmp_path / "studies.db").exists()


@pytest.mark.postgres
def test_processes_opening_a_new_postgres_study_storage_at_once_all_succeed(postgres_url, tmp_path):
    from fixtures.postgres import reset_database
    import sqlalchemy

    from tuneforge.hpo.study import SCHEMA

    reset_database(postgres_url)
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as connection:  # the optuna schema outlives reset_database
        connection.execute(sqlalchemy.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()
    assert open_at_once(str(tmp_path), postgres_url) == ["ok"] * 4
