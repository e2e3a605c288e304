"""The contract tests run every test against SQLite and against a throwaway PostgreSQL cluster."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or the session's PostgreSQL cluster reset."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from fixtures.postgres import reset_database

    url = request.getfixturevalue("postgres_url")
    reset_database(url)
    return url
