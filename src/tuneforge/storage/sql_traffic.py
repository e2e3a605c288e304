"""The served traffic's part of :class:`tuneforge.storage.sql.SqlStore`: the request log and feedback.

The inference server's writer thread adds requests in batches (one transaction per batch); feedback
names a logged request of the same project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from tuneforge.errors import NotFoundError
from tuneforge.storage import schema as t
from tuneforge.storage.records import FeedbackRecord, ServedRequestRecord
from tuneforge.storage.sql_rows import record_of, values_of

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_REQ, _FB = t.served_requests, t.request_feedback


class TrafficSql:
    """Store methods of the request log and feedback; mixed into SqlStore, which brings ``_session``."""

    if TYPE_CHECKING:
        def _session(self, operation: str, **kwargs: Any) -> AbstractContextManager[Connection]: ...

    def add_served_requests(self, records: Sequence[ServedRequestRecord]) -> None:
        if not records:
            return
        with self._session(f"log {len(records)} served requests") as conn:
            conn.execute(insert(_REQ), [values_of(r, _REQ) for r in records])

    def get_served_request(self, request_id: str, *, project: str) -> ServedRequestRecord:
        with self._session(f"read served request {request_id}") as conn:
            return record_of(ServedRequestRecord, _request_row(conn, request_id, project))

    def list_served_requests(self, *, project: str, name: str | None = None, alias: str | None = None,
                             model: str | None = None, since: float | None = None) -> list[ServedRequestRecord]:
        filters = {"name": name, "alias": alias, "model": model}
        conditions = [_REQ.c.project == project] + [_REQ.c[k] == v for k, v in filters.items() if v is not None]
        if since is not None:
            conditions.append(_REQ.c.created_at >= since)
        query = select(_REQ).where(*conditions).order_by(_REQ.c.seq)
        with self._session("list served requests") as conn:
            return [record_of(ServedRequestRecord, r) for r in conn.execute(query).all()]

    def add_feedback(self, record: FeedbackRecord) -> FeedbackRecord:
        with self._session(f"record feedback on {record.request_id}") as conn:
            _request_row(conn, record.request_id, record.project)
            conn.execute(insert(_FB).values(**values_of(record, _FB)))
        return record

    def list_feedback(self, *, project: str, name: str | None = None, model: str | None = None,
                      since: float | None = None) -> list[FeedbackRecord]:
        requests = select(_REQ.c.id).where(_REQ.c.project == project)
        if name is not None:
            requests = requests.where(_REQ.c.name == name)
        if model is not None:
            requests = requests.where(_REQ.c.model == model)
        if since is not None:
            requests = requests.where(_REQ.c.created_at >= since)
        query = select(_FB).where(_FB.c.project == project, _FB.c.request_id.in_(requests)).order_by(_FB.c.seq)
        with self._session("list feedback") as conn:
            return [record_of(FeedbackRecord, r) for r in conn.execute(query).all()]


def _request_row(conn: Connection, request_id: str, project: str) -> Any:
    row = conn.execute(select(_REQ).where(_REQ.c.id == request_id, _REQ.c.project == project)).first()
    if row is None:
        raise NotFoundError(f"no served request '{request_id}' in this project",
                            hint="give the id of a response this server returned (the 'id' field, chatcmpl-...)")
    return row
