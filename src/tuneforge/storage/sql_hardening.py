"""SqlStore's queries for API keys (expiry, revocation, last use) and for disk accounting (references,
sizes, garbage collection): a mixin of :class:`tuneforge.storage.sql.SqlStore`, which provides the session."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from tuneforge.errors import NotFoundError
from tuneforge.storage import schema as t
from tuneforge.storage.records import ApiKeyRecord, from_mapping

if TYPE_CHECKING:
    from sqlalchemy import Connection


class KeyAndDiskQueries:
    """The hardening queries; ``_session`` and ``_one`` are SqlStore's."""

    if TYPE_CHECKING:
        def _session(self, operation: str, **kwargs: Any) -> AbstractContextManager[Connection]: ...
        def _one(self, table: Any, cls: type, what: str, *conditions: Any) -> Any: ...

    # --- API keys: listing, revocation, last use (hardening) ------------------------------------------
    def get_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        with self._session("look up an API key") as conn:
            row = conn.execute(select(t.api_keys).where(t.api_keys.c.key_hash == key_hash)).first()
        return from_mapping(ApiKeyRecord, row._mapping) if row is not None else None

    def find_api_key(self, key_id: str) -> ApiKeyRecord:
        digits = key_id.removeprefix("key_")
        if len(digits) != 16 or not all(c in "0123456789abcdef" for c in digits):
            raise NotFoundError(f"no API key '{key_id[:40]}'", hint="key ids look like key_0123456789abcdef: "
                                "see 'tuneforge keys list'")
        return self._one(t.api_keys, ApiKeyRecord, f"API key '{key_id}'", t.api_keys.c.key_hash.startswith(digits))

    def list_api_keys(self, *, project: str | None = None) -> list[ApiKeyRecord]:
        query = select(t.api_keys).order_by(t.api_keys.c.created_at)
        if project is not None:
            query = query.where(t.api_keys.c.project == project)
        with self._session("list API keys") as conn:
            return [from_mapping(ApiKeyRecord, row._mapping) for row in conn.execute(query).all()]

    def disable_api_key(self, key_hash: str, *, at: float) -> bool:
        keys = t.api_keys
        with self._session("revoke an API key") as conn:
            query = update(keys).where(keys.c.key_hash == key_hash, keys.c.disabled_at.is_(None))
            return conn.execute(query.values(disabled_at=at)).rowcount == 1

    def touch_api_key(self, key_hash: str, *, at: float) -> None:
        with self._session("record the use of an API key") as conn:
            conn.execute(update(t.api_keys).where(t.api_keys.c.key_hash == key_hash).values(last_used_at=at))

    # --- disk: references, quota, garbage collection (hardening) ----------------------------------------
    def file_references(self, sha256: str) -> int:
        with self._session("count the files of an artifact") as conn:
            return conn.execute(select(func.count()).where(t.files.c.sha256 == sha256)).scalar()

    def file_hashes(self) -> set[str]:
        with self._session("list the artifacts in use") as conn:
            return set(conn.execute(select(t.files.c.sha256).distinct()).scalars())

    def project_file_bytes(self, project: str) -> int:
        with self._session(f"sum the file sizes of project '{project}'") as conn:
            return int(conn.execute(select(func.coalesce(func.sum(t.files.c.bytes), 0))
                                    .where(t.files.c.project == project)).scalar())

    def present_ids(self, kind: str, ids: Collection[str]) -> set[str]:
        table = {"jobs": t.jobs, "datasets": t.datasets}[kind]
        ids, present = list(ids), set()
        with self._session(f"look up {kind}") as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                present |= set(conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).scalars())
        return present

