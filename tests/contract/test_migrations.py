"""The Alembic migrations and the SQLAlchemy schema (``storage/schema.py``) agree, on SQLite and PostgreSQL.

When this fails after a change to ``schema.py``, add a migration under ``storage/migrations/versions``
(``alembic revision --autogenerate`` against a database at head writes most of it).
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from tuneforge.storage.engine import create_db_engine, migrate
from tuneforge.storage.records import JobStatus
from tuneforge.storage.schema import metadata
from tuneforge.storage.sql import SqlStore


@pytest.fixture
def engine(database_url):
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def test_migrations_at_head_match_the_schema(engine):
    with engine.begin() as conn:
        migrate(conn)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        differences = compare_metadata(context, metadata)
    assert differences == [], "schema.py and the migrations differ; add a migration"


def test_a_0001_database_keeps_its_jobs_as_train_jobs(engine, database_url):
    with engine.begin() as conn:
        migrate(conn, revision="0001")
        conn.execute(text(
            "INSERT INTO jobs (id, project, status, priority, model, config, request, seed, result_files, progress,"
            " created_at, attempts) VALUES ('ftjob-old', 'p1', 'queued', 0, 'tiny', '{}', '{}', 42, '[]', '{}', 1.0, 0)"
        ))
    store = SqlStore(database_url)  # migrates to head
    old = store.get_job("ftjob-old", project="p1")
    assert old.kind == "train" and old.result is None and old.status is JobStatus.QUEUED
    assert store.claim_job(worker_id="w", kinds=["train"]).id == "ftjob-old"
    store.close()
