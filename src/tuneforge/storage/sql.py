"""The one Store implementation: SQLAlchemy 2 Core over SQLite or PostgreSQL.

Every database call goes through :meth:`SqlStore._session` (as Optuna's storage goes through
``_create_scoped_session``): one transaction, committed when the block ends. The session maps database
errors in one place: the integrity error a method documents (a second checkpoint at the same step) gives
that method's result, and every other database failure becomes a :class:`StorageError` that names the
operation and says what to check. ``NotFoundError`` raised inside a session passes through (and rolls the
transaction back).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement, Connection, Select, Table, UniqueConstraint, Update, delete, func, insert, or_, select, update,
)
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

from tuneforge.errors import LeaseLost, NotFoundError, StorageError
from tuneforge.storage import schema as t
from tuneforge.storage.base import Store
from tuneforge.storage.engine import create_db_engine, migrate
from tuneforge.storage.sql_data import DataVersionsSql
from tuneforge.storage.sql_files import FilesSql
from tuneforge.storage.sql_hardening import KeyAndDiskQueries
from tuneforge.storage.sql_registry import RegistrySql
from tuneforge.storage.sql_traffic import TrafficSql
from tuneforge.storage.sql_rows import record_of as _record
from tuneforge.storage.sql_rows import values_of as _values
from tuneforge.storage.records import (
    FINAL_STATES, CheckpointRecord, EventRecord, JobControl, JobRecord, JobStatus,
    JobUpdate, Lease, MetricRecord, ModelRecord, Page, now,
)

R = TypeVar("R")  # a record class
_QUEUED, _RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value
# A lease holds while its job is running, and after its own attempt marked it succeeded (the model it
# registers then): no later attempt can exist once a job succeeded.
_LEASED = (_RUNNING, JobStatus.SUCCEEDED.value)
# What a stale running job becomes, by the control request its dead worker had not acted on yet.
_STALE_OUTCOME = {JobControl.CANCEL.value: JobStatus.CANCELLED, JobControl.PAUSE.value: JobStatus.PAUSED}


def _violates(exc: IntegrityError, constraint: UniqueConstraint) -> bool:
    """Whether ``exc`` breaks ``constraint``: PostgreSQL names the constraint, SQLite lists its columns."""
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if name is not None:
        return name == constraint.name
    columns = ", ".join(f"{constraint.table.name}.{column.name}" for column in constraint.columns)
    return f"UNIQUE constraint failed: {columns}" in str(exc.orig)


def _first_line(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SqlStore(FilesSql, RegistrySql, TrafficSql, DataVersionsSql, KeyAndDiskQueries, Store):
    """The Store on a SQL database (the model registry's, the data sets' and the key and disk queries come from
    mixins).

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://...``.
        migrate_schema: Apply pending migrations first (the server and workers do; job processes skip it).

    Raises:
        StorageError: The database cannot be reached or migrated.
    """

    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._shown_url = self.engine.url.render_as_string(hide_password=True)
        if migrate_schema:
            try:
                with self._session("migrate the database schema") as conn:
                    migrate(conn)
            except StorageError:
                self.engine.dispose()
                raise

    def close(self) -> None:
        self.engine.dispose()

    # --- the session helper -------------------------------------------------------------------------
    @contextmanager
    def _session(self, operation: str, *, duplicate: UniqueConstraint | None = None) -> Iterator[Connection]:
        """One transaction for ``operation`` (worded to follow "could not ..."), committed when the block ends.

        A violation of ``duplicate`` ends the block quietly, rolled back: the caller's code after the
        ``with`` statement gives the documented result. Any other database failure raises StorageError.
        """
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            if duplicate is None or not _violates(exc, duplicate):
                raise self._error(exc, operation) from exc
        except SQLAlchemyError as exc:
            raise self._error(exc, operation) from exc

    def _error(self, exc: SQLAlchemyError, operation: str) -> StorageError:
        reason = _first_line(exc)
        if isinstance(exc, ProgrammingError) or reason.startswith(("no such table", "no such column")):
            hint = (f"the schema of the database at {self._shown_url} does not match this version of tuneforge: "
                    "start the server or a worker once to migrate it, and check TUNEFORGE_DATABASE_URL")
        else:
            hint = f"is the database at {self._shown_url} reachable and writable? check TUNEFORGE_DATABASE_URL"
        return StorageError(f"could not {operation}: {reason}", hint=hint)

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _find(conn: Connection, table: Table, cls: type[R], what: str, *conditions: ColumnElement[bool]) -> R:
        row = conn.execute(select(table).where(*conditions)).first()
        if row is None:
            raise NotFoundError(f"no {what}", hint="check the id (records of other projects are not visible)")
        return _record(cls, row)

    def _one(self, table: Table, cls: type[R], what: str, *conditions: ColumnElement[bool]) -> R:
        with self._session(f"read {what}") as conn:
            return self._find(conn, table, cls, what, *conditions)

    def _page(self, table: Table, cls: type[R], conditions: list[ColumnElement[bool]], *, what: str,
              after: str | None, limit: int, order: str = "desc") -> Page[R]:
        with self._session(f"list {what}") as conn:
            if after is not None:
                seq = conn.execute(select(table.c.seq).where(table.c.id == after, *conditions)).scalar()
                if seq is None:
                    raise NotFoundError(f"no item '{after}' to page after",
                                        hint="pass the id of an item of the listing")
                conditions = [*conditions, table.c.seq < seq if order == "desc" else table.c.seq > seq]
            ordering = table.c.seq.desc() if order == "desc" else table.c.seq.asc()
            rows = conn.execute(select(table).where(*conditions).order_by(ordering).limit(limit + 1)).all()
        return Page([_record(cls, r) for r in rows[:limit]], has_more=len(rows) > limit)

    def _insert(self, table: Table, record: object, what: str, *, lease: Lease | None = None) -> None:
        with self._session(f"add {what}") as conn:
            _hold(conn, lease)
            conn.execute(insert(table).values(**_values(record, table)))

    # --- API keys -------------------------------------------------------------------------------------
    def add_api_key(self, *, project: str, key_hash: str, prefix: str, expires_at: float | None = None,
                    is_admin: bool = False) -> None:
        with self._session("add an API key") as conn:
            conn.execute(insert(t.api_keys).values(key_hash=key_hash, prefix=prefix, project=project, created_at=now(),
                                                   expires_at=expires_at, is_admin=is_admin))

    def project_of_key(self, key_hash: str) -> str | None:
        with self._session("look up an API key") as conn:
            return conn.execute(select(t.api_keys.c.project).where(t.api_keys.c.key_hash == key_hash)).scalar()

    # --- jobs -------------------------------------------------------------------------------------------
    def add_job(self, record: JobRecord) -> JobRecord:
        with self._session(f"add job '{record.id}'") as conn:
            seq = conn.execute(insert(t.jobs).values(**_values(record, t.jobs)).returning(t.jobs.c.seq)).scalar()
        return dataclasses.replace(record, seq=seq)

    def get_job(self, job_id: str, *, project: str | None = None) -> JobRecord:
        scope = [t.jobs.c.project == project] if project is not None else []
        return self._one(t.jobs, JobRecord, f"job '{job_id}'", t.jobs.c.id == job_id, *scope)

    def list_jobs(self, *, project: str | None, after: str | None = None, limit: int = 20,
                  status: JobStatus | None = None, kind: str | None = None) -> Page[JobRecord]:
        conditions = [t.jobs.c.project == project] if project is not None else []
        if status is not None:
            conditions.append(t.jobs.c.status == JobStatus(status).value)
        if kind is not None:
            conditions.append(t.jobs.c.kind == kind)
        return self._page(t.jobs, JobRecord, conditions, what="jobs", after=after, limit=limit)

    def delete_job(self, job_id: str, *, project: str) -> None:
        what = f"job '{job_id}'"
        with self._session(f"delete {what}") as conn:
            self._find(conn, t.jobs, JobRecord, what, t.jobs.c.id == job_id, t.jobs.c.project == project)
            for table in (t.job_events, t.job_metrics, t.checkpoints):
                conn.execute(delete(table).where(table.c.job_id == job_id))
            conn.execute(delete(t.jobs).where(t.jobs.c.id == job_id))

    def update_job(self, job_id: str, update: JobUpdate, *, from_states: Iterable[JobStatus],
                   held_by: str | None = None, lease: Lease | None = None, cancel_pending: bool | None = None) -> bool:
        values = update.values()
        if not values:
            raise ValueError(f"an empty JobUpdate for job '{job_id}': set at least one field")
        states = [JobStatus(state).value for state in from_states]
        conditions = [t.jobs.c.id == job_id, t.jobs.c.status.in_(states)]
        if held_by is not None:
            conditions.append(t.jobs.c.worker_id == held_by)
        if cancel_pending is not None:  # NULL is distinct from 'cancel' (a plain != would leave it out)
            control, cancel = t.jobs.c.control, JobControl.CANCEL.value
            conditions.append(control == cancel if cancel_pending else control.is_distinct_from(cancel))
        with self._session(f"update job '{job_id}'") as conn:
            _hold(conn, lease)
            return conn.execute(_update_jobs(*conditions).values(**values)).rowcount == 1

    def claim_job(self, *, worker_id: str, kinds: Collection[str] | None = None,
                  max_running_per_project: int = 0) -> JobRecord | None:
        query = _claim_order(select(t.jobs.c.id).where(t.jobs.c.status == _QUEUED), max_running_per_project)
        if kinds is not None:
            query = query.where(t.jobs.c.kind.in_(list(kinds)))
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        with self._session("claim a job") as conn:
            job_id = conn.execute(query).scalar()
            if job_id is None:
                return None
            stamp = now()
            claimed = conn.execute(
                _update_jobs(t.jobs.c.id == job_id, t.jobs.c.status == _QUEUED).values(
                    status=_RUNNING, worker_id=worker_id, heartbeat_at=stamp, attempts=t.jobs.c.attempts + 1,
                    claimed_at=stamp,
                    started_at=func.coalesce(t.jobs.c.started_at, stamp), control=None,
                )
            ).rowcount
            if claimed != 1:  # SQLite: cannot happen under BEGIN IMMEDIATE; kept as the guard everywhere
                return None
            return _record(JobRecord, conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).one())

    def heartbeat(self, job_ids: Iterable[str], *, worker_id: str) -> dict[str, JobControl | None]:
        job_ids = list(job_ids)
        if not job_ids:
            return {}
        mine = [t.jobs.c.id.in_(job_ids), t.jobs.c.worker_id == worker_id, t.jobs.c.status == _RUNNING]
        with self._session("record a heartbeat") as conn:
            conn.execute(_update_jobs(*mine).values(heartbeat_at=now()))
            rows = conn.execute(select(t.jobs.c.id, t.jobs.c.control).where(*mine)).all()
        return {row.id: JobControl(row.control) if row.control else None for row in rows}

    def requeue_stale(self, *, older_than: float) -> list[tuple[str, JobStatus]]:
        stale = [t.jobs.c.status == _RUNNING, t.jobs.c.heartbeat_at < older_than]
        changed = []
        with self._session("requeue the jobs of dead workers") as conn:
            for row in conn.execute(select(t.jobs.c.id, t.jobs.c.control).where(*stale)).all():
                status = _STALE_OUTCOME.get(row.control, JobStatus.QUEUED)
                values: dict[str, Any] = {"status": status.value, "worker_id": None, "control": None}
                if status.is_final():
                    values["finished_at"] = now()
                if conn.execute(_update_jobs(t.jobs.c.id == row.id, *stale).values(**values)).rowcount:
                    changed.append((row.id, status))
        return changed

    def hold_lease(self, lease: Lease) -> None:
        with self._session(f"check the lease of job '{lease.job_id}'") as conn:
            _hold(conn, lease)

    def queue_position(self, job_id: str, *, across_projects: bool = False) -> int | None:
        what = f"job '{job_id}'"
        with self._session(f"find the queue position of {what}") as conn:
            job = self._find(conn, t.jobs, JobRecord, what, t.jobs.c.id == job_id)
            if job.status != JobStatus.QUEUED:
                return None
            ahead = or_(t.jobs.c.priority > job.priority,
                        (t.jobs.c.priority == job.priority) & (t.jobs.c.seq < job.seq))
            scope = [] if across_projects else [t.jobs.c.project == job.project]
            return conn.execute(select(func.count()).where(t.jobs.c.status == _QUEUED, ahead, *scope)).scalar() + 1

    def count_jobs(self, *, project: str | None = None) -> dict[JobStatus, int]:
        query = select(t.jobs.c.status, func.count()).group_by(t.jobs.c.status)
        if project is not None:
            query = query.where(t.jobs.c.project == project)
        with self._session("count jobs") as conn:
            rows = conn.execute(query).all()
        return {JobStatus(status): count for status, count in rows}

    def job_durations(self, *, project: str | None = None) -> list[tuple[JobStatus, float]]:
        query = select(t.jobs.c.status, t.jobs.c.finished_at - t.jobs.c.started_at).where(
            t.jobs.c.status.in_([s.value for s in FINAL_STATES]), t.jobs.c.started_at.is_not(None),
            t.jobs.c.finished_at.is_not(None), *([t.jobs.c.project == project] if project is not None else []))
        with self._session("read job durations") as conn:
            rows = conn.execute(query).all()
        return [(JobStatus(status), float(seconds)) for status, seconds in rows]

    # --- events, metrics, checkpoints -------------------------------------------------------------------
    def add_event(self, record: EventRecord, *, lease: Lease | None = None) -> None:
        self._insert(t.job_events, record, f"an event of job '{record.job_id}'", lease=lease)

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]:
        return self._page(t.job_events, EventRecord, [t.job_events.c.job_id == job_id],
                          what=f"events of job '{job_id}'", after=after, limit=limit)

    def count_alerts(self, *, project: str | None = None) -> dict[str, int]:
        kind = t.job_events.c.data["kind"].as_string()
        query = select(kind, func.count()).where(t.job_events.c.type == "alert").group_by(kind)
        if project is not None:
            query = query.join(t.jobs, t.jobs.c.id == t.job_events.c.job_id).where(t.jobs.c.project == project)
        with self._session("count alert events") as conn:
            return {str(name): count for name, count in conn.execute(query).all()}

    def add_metric(self, record: MetricRecord, *, lease: Lease | None = None) -> None:
        m = t.job_metrics
        with self._session(f"add metrics of job '{record.job_id}'") as conn:
            _hold(conn, lease)
            conn.execute(delete(m).where(m.c.job_id == record.job_id, m.c.step >= record.step))  # a re-run step
            conn.execute(insert(m).values(**_values(record, m)))

    def list_metrics(self, job_id: str) -> list[MetricRecord]:
        query = select(t.job_metrics).where(t.job_metrics.c.job_id == job_id).order_by(t.job_metrics.c.seq)
        with self._session(f"list metrics of job '{job_id}'") as conn:
            return [_record(MetricRecord, r) for r in conn.execute(query).all()]

    def add_checkpoint(self, record: CheckpointRecord, *, lease: Lease | None = None) -> bool:
        # No select-then-insert: the unique constraint decides, so a concurrent writer cannot slip between.
        what = f"checkpoint of job '{record.job_id}' at step {record.step}"
        with self._session(f"add the {what}", duplicate=t.uq_checkpoints_job_step) as conn:
            _hold(conn, lease)
            conn.execute(insert(t.checkpoints).values(**_values(record, t.checkpoints)))
            return True
        return False  # reached only when the session swallowed the duplicate-step violation

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]:
        return self._page(t.checkpoints, CheckpointRecord, [t.checkpoints.c.job_id == job_id],
                          what=f"checkpoints of job '{job_id}'", after=after, limit=limit)

    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        return self._one(t.checkpoints, CheckpointRecord, f"checkpoint '{checkpoint_id}'",
                         t.checkpoints.c.id == checkpoint_id)

    # --- fine-tuned models --------------------------------------------------------------------------------
    def add_model(self, record: ModelRecord, *, lease: Lease | None = None) -> None:
        self._insert(t.models, record, f"model '{record.id}'", lease=lease)

    def get_model(self, model_id: str, *, project: str) -> ModelRecord:
        return self._one(t.models, ModelRecord, f"model '{model_id}'", t.models.c.id == model_id,
                         t.models.c.project == project)

    def list_models(self, *, project: str) -> list[ModelRecord]:
        query = select(t.models).where(t.models.c.project == project).order_by(t.models.c.seq)
        with self._session("list models") as conn:
            return [_record(ModelRecord, r) for r in conn.execute(query).all()]

    def delete_model(self, model_id: str, *, project: str) -> ModelRecord:
        what = f"model '{model_id}'"
        with self._session(f"delete {what}") as conn:
            record = self._find(conn, t.models, ModelRecord, what, t.models.c.id == model_id,
                                t.models.c.project == project)
            conn.execute(delete(t.models).where(t.models.c.id == model_id))
        return record


def _claim_order(query: Select[Any], max_running_per_project: int) -> Select[Any]:
    """Claim order: priority, then round-robin across projects (the project whose latest claim is oldest),
    then age; projects at their limit of running jobs are left out."""
    served = t.jobs.alias("served")
    last_claim = (select(func.coalesce(func.max(served.c.claimed_at), 0.0))
                  .where(served.c.project == t.jobs.c.project).scalar_subquery())
    if max_running_per_project > 0:
        running = t.jobs.alias("busy")
        full = (select(running.c.project).where(running.c.status == _RUNNING).group_by(running.c.project)
                .having(func.count() >= max_running_per_project))
        query = query.where(t.jobs.c.project.not_in(full))
    return query.order_by(t.jobs.c.priority.desc(), last_claim, t.jobs.c.seq).limit(1)


def _hold(conn: Connection, lease: Lease | None) -> None:
    """The fence of a leased write, in the write's transaction: a no-op UPDATE of the job's row that matches
    only while ``lease`` holds it. It takes the row's write lock (PostgreSQL; SQLite's BEGIN IMMEDIATE holds
    the database's), so a requeue or claim cannot change the attempt before this transaction commits."""
    if lease is None:
        return
    held = _update_jobs(t.jobs.c.id == lease.job_id, t.jobs.c.attempts == lease.attempt, t.jobs.c.status.in_(_LEASED))
    if conn.execute(held.values(attempts=t.jobs.c.attempts)).rowcount != 1:
        raise LeaseLost(lease.job_id, attempt=lease.attempt)


def _update_jobs(*conditions: ColumnElement[bool]) -> Update:
    # ``update`` is also update_job's parameter name; this keeps SQLAlchemy's function reachable there.
    return update(t.jobs).where(*conditions)
