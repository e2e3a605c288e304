"""Engines for SQLite and PostgreSQL, and the migrations that bring a database to the current schema."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

from tuneforge.errors import MissingDependencyError, StorageError

# One advisory-lock key, so that processes starting together migrate one after another (PostgreSQL).
_MIGRATION_LOCK = 72_410_001


def normalize_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with write transactions that take the lock up front
    (``BEGIN IMMEDIATE``, so concurrent writers wait instead of failing), or PostgreSQL through psycopg.

    Raises:
        MissingDependencyError: A PostgreSQL URL without psycopg installed.
        StorageError: The URL names neither database.
    """
    from sqlalchemy import create_engine, event

    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            _create_private(Path(path))
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise MissingDependencyError("psycopg", extra="platform", purpose="a PostgreSQL database") from None
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    raise StorageError(
        f"unsupported database URL '{url.split(':', 1)[0]}:...'",
        hint="use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB in TUNEFORGE_DATABASE_URL",
    )


def _create_private(path: Path) -> None:
    """Create the SQLite file (and its folder) readable by its owner only: 0600 in a 0700 folder (SQLite
    gives its -wal and -shm files the database file's permissions). Existing ones are left as they are."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" listener issues BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(connection: Connection, *, revision: str = "head") -> None:
    """Apply the migrations shipped in ``tuneforge/storage/migrations`` up to ``revision`` (idempotent), in
    the transaction of ``connection``. On PostgreSQL an advisory lock makes processes that start together
    migrate one after another."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    config = Config()
    config.set_main_option("script_location", str(resources.files("tuneforge.storage") / "migrations"))
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
