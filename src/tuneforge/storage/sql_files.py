"""The uploaded files' and datasets' part of :class:`tuneforge.storage.sql.SqlStore` (kept apart to keep sql.py
short)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, update

from tuneforge.storage import schema as t
from tuneforge.storage.records import DatasetRecord, FileRecord, Lease, Page

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy import ColumnElement, Connection, Table, UniqueConstraint


class FilesSql:
    """Store methods of uploaded files and datasets; mixed into SqlStore, which brings the helpers below."""

    if TYPE_CHECKING:
        def _session(self, operation: str, *,
                     duplicate: UniqueConstraint | None = None) -> AbstractContextManager[Connection]: ...

        def _insert(self, table: Table, record: object, what: str, *, lease: Lease | None = None) -> None: ...

        def _one(self, table: Table, cls: type[Any], what: str, *conditions: ColumnElement[bool]) -> Any: ...

        def _page(self, table: Table, cls: type[Any], conditions: list[ColumnElement[bool]], *, what: str,
                  after: str | None = None, limit: int = 100, order: str = "desc") -> Page[Any]: ...

        @staticmethod
        def _find(conn: Connection, table: Table, cls: type[Any], what: str,
                  *conditions: ColumnElement[bool]) -> Any: ...

    def add_file(self, record: FileRecord, *, lease: Lease | None = None) -> FileRecord:
        self._insert(t.files, record, f"file '{record.id}'", lease=lease)
        return record

    def get_file(self, file_id: str, *, project: str | None = None) -> FileRecord:
        scope = [t.files.c.project == project] if project is not None else []
        return self._one(t.files, FileRecord, f"file '{file_id}'", t.files.c.id == file_id, *scope)

    def list_files(self, *, project: str, purpose: str | None = None, after: str | None = None, limit: int = 100,
                   order: str = "desc") -> Page[FileRecord]:
        conditions = [t.files.c.project == project]
        if purpose:
            conditions.append(t.files.c.purpose == purpose)
        return self._page(t.files, FileRecord, conditions, what="files", after=after, limit=limit, order=order)

    def delete_file(self, file_id: str, *, project: str) -> FileRecord:
        what = f"file '{file_id}'"
        with self._session(f"delete {what}") as conn:
            record = self._find(conn, t.files, FileRecord, what, t.files.c.id == file_id, t.files.c.project == project)
            conn.execute(delete(t.files).where(t.files.c.id == file_id))
        return record

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        self._insert(t.datasets, record, f"dataset '{record.id}'")
        return record

    def get_dataset(self, dataset_id: str, *, project: str) -> DatasetRecord:
        return self._one(t.datasets, DatasetRecord, f"dataset '{dataset_id}'", t.datasets.c.id == dataset_id,
                         t.datasets.c.project == project)

    def list_datasets(self, *, project: str, after: str | None = None, limit: int = 100) -> Page[DatasetRecord]:
        return self._page(t.datasets, DatasetRecord, [t.datasets.c.project == project], what="datasets",
                          after=after, limit=limit)

    def update_dataset(self, dataset_id: str, *, format: str, examples: int) -> None:
        with self._session(f"update dataset '{dataset_id}'") as conn:
            query = update(t.datasets).where(t.datasets.c.id == dataset_id)
            conn.execute(query.values(format=format, examples=examples))
