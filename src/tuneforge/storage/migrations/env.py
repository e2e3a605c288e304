"""Alembic environment: migrations run on the connection tuneforge hands over (see ``storage.sql``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tuneforge.storage.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Run on ``config.attributes['connection']``, or on a new engine for ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with create_engine(config.get_main_option("sqlalchemy.url")).begin() as conn:
        _run(conn)


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
