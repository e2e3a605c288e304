"""The versioned data sets' part of :class:`tuneforge.storage.sql.SqlStore` (kept apart to keep sql.py short).

A version's number is the data set's newest plus one, taken in one transaction; the unique (data set, version)
constraint makes a concurrent writer that took the same number retry, and the unique (data set, sha256) one
keeps the same content from being stored twice.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from sqlalchemy import Connection, ColumnElement, Select, func, insert, select

from tuneforge.errors import NotFoundError, StorageError
from tuneforge.storage import schema as t
from tuneforge.storage.records import DataSetRecord, DataVersionRecord, new_id
from tuneforge.storage.sql_rows import record_of, values_of

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy import UniqueConstraint


class DataVersionsSql:
    """Store methods of versioned data sets; mixed into SqlStore, which brings ``_session``."""

    if TYPE_CHECKING:
        def _session(self, operation: str, *,
                     duplicate: UniqueConstraint | None = None) -> AbstractContextManager[Connection]: ...

    def add_data_version(self, record: DataVersionRecord) -> tuple[DataVersionRecord, bool]:
        what = f"version of data set '{record.name}'"
        for _ in range(5):  # a concurrent writer may take the same number (or create the data set) first
            dataset_id = self._data_set_id(record.project, record.name)
            if dataset_id is None:
                continue
            with self._session(f"add a {what}", duplicate=t.uq_data_versions_number) as conn:
                versions = t.data_versions.c
                same = conn.execute(select(versions.id).where(versions.dataset_id == dataset_id,
                                                              versions.sha256 == record.sha256)).scalar()
                if same is not None:
                    return self._find_version(conn, f"data version '{same}'", versions.id == same), False
                newest = conn.execute(select(func.max(versions.version)).where(versions.dataset_id == dataset_id))
                stored = dataclasses.replace(record, dataset_id=dataset_id, version=(newest.scalar() or 0) + 1)
                conn.execute(insert(t.data_versions).values(**values_of(stored, t.data_versions)))
                return stored, True
        raise StorageError(f"could not add a {what}: too many concurrent writers",
                           hint="run the command again")

    def _data_set_id(self, project: str, name: str) -> str | None:
        """The id of a data set, created when missing (``None`` when a concurrent writer won the race)."""
        sets = t.data_sets.c
        with self._session(f"read data set '{name}'") as conn:
            found = conn.execute(select(sets.id).where(sets.project == project, sets.name == name)).scalar()
        if found is not None:
            return found
        created = DataSetRecord(id=new_id("dset"), project=project, name=name)
        with self._session(f"add data set '{name}'", duplicate=t.uq_data_sets_project_name) as conn:
            conn.execute(insert(t.data_sets).values(**values_of(created, t.data_sets)))
            return created.id
        return None

    @staticmethod
    def _find_version(conn: Connection, what: str, *conditions: ColumnElement[bool]) -> DataVersionRecord:
        row = conn.execute(_versions_query().where(*conditions)).first()
        if row is None:
            raise NotFoundError(f"no {what}", hint="list the versions with 'tuneforge data versions NAME'")
        return record_of(DataVersionRecord, row)

    def get_data_version(self, *, project: str, name: str, version: int | None = None) -> DataVersionRecord:
        scope = [t.data_sets.c.project == project, t.data_sets.c.name == name]
        with self._session(f"read data set '{name}'") as conn:
            if version is None:
                newest = select(func.max(t.data_versions.c.version)).select_from(
                    t.data_versions.join(t.data_sets)).where(*scope)
                version = conn.execute(newest).scalar()
                if version is None:
                    raise NotFoundError(f"no data set '{name}'", hint="list them with 'tuneforge data versions'")
            return self._find_version(conn, f"version {version} of data set '{name}'", *scope,
                                      t.data_versions.c.version == version)

    def get_data_version_by_id(self, version_id: str, *, project: str) -> DataVersionRecord:
        with self._session(f"read data version '{version_id}'") as conn:
            return self._find_version(conn, f"data version '{version_id}'", t.data_versions.c.id == version_id,
                                      t.data_sets.c.project == project)

    def list_data_versions(self, *, project: str, name: str) -> list[DataVersionRecord]:
        query = _versions_query().where(t.data_sets.c.project == project, t.data_sets.c.name == name)
        with self._session(f"list the versions of data set '{name}'") as conn:
            rows = conn.execute(query.order_by(t.data_versions.c.version)).all()
        if not rows:
            raise NotFoundError(f"no data set '{name}'", hint="list them with 'tuneforge data versions'")
        return [record_of(DataVersionRecord, row) for row in rows]

    def list_data_sets(self, *, project: str) -> list[DataSetRecord]:
        query = select(t.data_sets).where(t.data_sets.c.project == project).order_by(t.data_sets.c.name)
        with self._session("list data sets") as conn:
            return [record_of(DataSetRecord, row) for row in conn.execute(query).all()]


def _versions_query() -> Select:
    """Versions with the project and name of their data set."""
    return select(t.data_versions, t.data_sets.c.project, t.data_sets.c.name).join(
        t.data_sets, t.data_sets.c.id == t.data_versions.c.dataset_id)
