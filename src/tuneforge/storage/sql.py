"""The one Store implementation: SQLAlchemy 2 Core over SQLite or PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update

from tuneforge.errors import NotFoundError
from tuneforge.storage import schema as t
from tuneforge.storage.base import Store
from tuneforge.storage.engine import create_db_engine, migrate
from tuneforge.storage.records import (
    CANCELLED, FINAL_STATES, PAUSED, QUEUED, RUNNING, CheckpointRecord, DatasetRecord, EventRecord, FileRecord,
    JobRecord, MetricRecord, ModelRecord, Page, now,
)


def _record(cls: type, row: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _values(record: Any, table: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(record).items() if k in table.c and k != "seq"}


class SqlStore(Store):
    """The Store on a SQL database.

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://...``.
        migrate_schema: Apply pending migrations first (the server and workers do; job processes skip it).
    """

    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        if migrate_schema:
            migrate(self.engine)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # --- helpers ------------------------------------------------------------------------------------
    def _one(self, table: Any, cls: type, what: str, *conditions: Any) -> Any:
        with self._tx() as conn:
            row = conn.execute(select(table).where(*conditions)).first()
        if row is None:
            raise NotFoundError(f"no {what}", hint="check the id (records of other projects are not visible)")
        return _record(cls, row)

    def _page(self, table: Any, cls: type, conditions: list[Any], *, after: str | None, limit: int,
              order: str = "desc") -> Page[Any]:
        with self._tx() as conn:
            if after is not None:
                seq = conn.execute(select(table.c.seq).where(table.c.id == after, *conditions)).scalar()
                if seq is None:
                    raise NotFoundError(f"no item '{after}' to page after", hint="pass the id of an item of the listing")
                conditions = [*conditions, table.c.seq < seq if order == "desc" else table.c.seq > seq]
            ordering = table.c.seq.desc() if order == "desc" else table.c.seq.asc()
            rows = conn.execute(select(table).where(*conditions).order_by(ordering).limit(limit + 1)).all()
        return Page([_record(cls, r) for r in rows[:limit]], has_more=len(rows) > limit)

    # --- API keys -------------------------------------------------------------------------------------
    def add_api_key(self, *, project: str, key_hash: str, prefix: str) -> None:
        with self._tx() as conn:
            conn.execute(insert(t.api_keys).values(key_hash=key_hash, prefix=prefix, project=project, created_at=now()))

    def project_of_key(self, key_hash: str) -> str | None:
        with self._tx() as conn:
            return conn.execute(select(t.api_keys.c.project).where(t.api_keys.c.key_hash == key_hash)).scalar()

    # --- files and datasets ---------------------------------------------------------------------------
    def add_file(self, record: FileRecord) -> FileRecord:
        with self._tx() as conn:
            conn.execute(insert(t.files).values(**_values(record, t.files)))
        return record

    def get_file(self, file_id: str, *, project: str | None = None) -> FileRecord:
        scope = [t.files.c.project == project] if project is not None else []
        return self._one(t.files, FileRecord, f"file '{file_id}'", t.files.c.id == file_id, *scope)

    def list_files(self, *, project: str, purpose: str | None = None, after: str | None = None, limit: int = 100,
                   order: str = "desc") -> Page[FileRecord]:
        conditions = [t.files.c.project == project]
        if purpose:
            conditions.append(t.files.c.purpose == purpose)
        return self._page(t.files, FileRecord, conditions, after=after, limit=limit, order=order)

    def delete_file(self, file_id: str, *, project: str) -> FileRecord:
        record = self.get_file(file_id, project=project)
        with self._tx() as conn:
            conn.execute(delete(t.files).where(t.files.c.id == file_id))
        return record

    def add_dataset(self, record: DatasetRecord) -> DatasetRecord:
        with self._tx() as conn:
            conn.execute(insert(t.datasets).values(**_values(record, t.datasets)))
        return record

    def get_dataset(self, dataset_id: str, *, project: str) -> DatasetRecord:
        return self._one(t.datasets, DatasetRecord, f"dataset '{dataset_id}'", t.datasets.c.id == dataset_id,
                         t.datasets.c.project == project)

    def list_datasets(self, *, project: str, after: str | None = None, limit: int = 100) -> Page[DatasetRecord]:
        return self._page(t.datasets, DatasetRecord, [t.datasets.c.project == project], after=after, limit=limit)

    def update_dataset(self, dataset_id: str, **fields: Any) -> None:
        with self._tx() as conn:
            conn.execute(update(t.datasets).where(t.datasets.c.id == dataset_id).values(**fields))

    # --- jobs -------------------------------------------------------------------------------------------
    def add_job(self, record: JobRecord) -> JobRecord:
        with self._tx() as conn:
            record.seq = conn.execute(insert(t.jobs).values(**_values(record, t.jobs)).returning(t.jobs.c.seq)).scalar()
        return record

    def get_job(self, job_id: str, *, project: str | None = None) -> JobRecord:
        scope = [t.jobs.c.project == project] if project is not None else []
        return self._one(t.jobs, JobRecord, f"fine-tuning job '{job_id}'", t.jobs.c.id == job_id, *scope)

    def list_jobs(self, *, project: str | None, after: str | None = None, limit: int = 20,
                  status: str | None = None) -> Page[JobRecord]:
        conditions = [t.jobs.c.project == project] if project is not None else []
        if status:
            conditions.append(t.jobs.c.status == status)
        return self._page(t.jobs, JobRecord, conditions, after=after, limit=limit)

    def delete_job(self, job_id: str, *, project: str) -> None:
        self.get_job(job_id, project=project)
        with self._tx() as conn:
            for table in (t.job_events, t.job_metrics, t.checkpoints):
                conn.execute(delete(table).where(table.c.job_id == job_id))
            conn.execute(delete(t.jobs).where(t.jobs.c.id == job_id))

    def transition(self, job_id: str, *, from_states: tuple[str, ...], held_by: str | None = None,
                   **fields: Any) -> bool:
        conditions = [t.jobs.c.id == job_id, t.jobs.c.status.in_(from_states)]
        if held_by is not None:
            conditions.append(t.jobs.c.worker_id == held_by)
        with self._tx() as conn:
            return conn.execute(update(t.jobs).where(*conditions).values(**fields)).rowcount == 1

    def claim_job(self, *, worker_id: str) -> JobRecord | None:
        query = select(t.jobs.c.id).where(t.jobs.c.status == QUEUED)
        query = query.order_by(t.jobs.c.priority.desc(), t.jobs.c.seq).limit(1)
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        with self._tx() as conn:
            job_id = conn.execute(query).scalar()
            if job_id is None:
                return None
            stamp = now()
            claimed = conn.execute(
                update(t.jobs).where(t.jobs.c.id == job_id, t.jobs.c.status == QUEUED).values(
                    status=RUNNING, worker_id=worker_id, heartbeat_at=stamp, attempts=t.jobs.c.attempts + 1,
                    started_at=func.coalesce(t.jobs.c.started_at, stamp), control=None,
                )
            ).rowcount
            if claimed != 1:  # SQLite: cannot happen under BEGIN IMMEDIATE; kept as the guard everywhere
                return None
            return _record(JobRecord, conn.execute(select(t.jobs).where(t.jobs.c.id == job_id)).one())

    def heartbeat(self, job_ids: list[str], *, worker_id: str) -> dict[str, str]:
        if not job_ids:
            return {}
        mine = [t.jobs.c.id.in_(job_ids), t.jobs.c.worker_id == worker_id, t.jobs.c.status == RUNNING]
        with self._tx() as conn:
            conn.execute(update(t.jobs).where(*mine).values(heartbeat_at=now()))
            rows = conn.execute(select(t.jobs.c.id, t.jobs.c.control).where(*mine))
            return {row.id: row.control or "" for row in rows}

    def requeue_stale(self, *, older_than: float) -> list[tuple[str, str]]:
        stale = [t.jobs.c.status == RUNNING, t.jobs.c.heartbeat_at < older_than]
        changed = []
        with self._tx() as conn:
            for row in conn.execute(select(t.jobs.c.id, t.jobs.c.control).where(*stale)).all():
                status = {"cancel": CANCELLED, "pause": PAUSED}.get(row.control, QUEUED)
                values: dict[str, Any] = {"status": status, "worker_id": None, "control": None}
                if status == CANCELLED:
                    values["finished_at"] = now()
                if conn.execute(update(t.jobs).where(t.jobs.c.id == row.id, *stale).values(**values)).rowcount:
                    changed.append((row.id, status))
        return changed

    def queue_position(self, job_id: str) -> int | None:
        job = self.get_job(job_id)
        if job.status != QUEUED:
            return None
        ahead = or_(t.jobs.c.priority > job.priority, (t.jobs.c.priority == job.priority) & (t.jobs.c.seq < job.seq))
        with self._tx() as conn:
            return conn.execute(select(func.count()).where(t.jobs.c.status == QUEUED, ahead)).scalar() + 1

    def count_jobs(self) -> dict[str, int]:
        with self._tx() as conn:
            rows = conn.execute(select(t.jobs.c.status, func.count()).group_by(t.jobs.c.status)).all()
        return {status: count for status, count in rows}

    def job_durations(self) -> list[tuple[str, float]]:
        query = select(t.jobs.c.status, t.jobs.c.finished_at - t.jobs.c.started_at).where(
            t.jobs.c.status.in_(FINAL_STATES), t.jobs.c.started_at.is_not(None), t.jobs.c.finished_at.is_not(None))
        with self._tx() as conn:
            return [(status, float(seconds)) for status, seconds in conn.execute(query).all()]

    # --- events, metrics, checkpoints -------------------------------------------------------------------
    def add_event(self, record: EventRecord) -> None:
        with self._tx() as conn:
            conn.execute(insert(t.job_events).values(**_values(record, t.job_events)))

    def list_events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> Page[EventRecord]:
        return self._page(t.job_events, EventRecord, [t.job_events.c.job_id == job_id], after=after, limit=limit)

    def add_metric(self, record: MetricRecord) -> None:
        with self._tx() as conn:
            conn.execute(insert(t.job_metrics).values(**_values(record, t.job_metrics)))

    def list_metrics(self, job_id: str) -> list[MetricRecord]:
        query = select(t.job_metrics).where(t.job_metrics.c.job_id == job_id).order_by(t.job_metrics.c.seq)
        with self._tx() as conn:
            return [_record(MetricRecord, r) for r in conn.execute(query).all()]

    def add_checkpoint(self, record: CheckpointRecord) -> bool:
        same = [t.checkpoints.c.job_id == record.job_id, t.checkpoints.c.step == record.step]
        with self._tx() as conn:
            if conn.execute(select(t.checkpoints.c.id).where(*same)).first() is not None:
                return False
            conn.execute(insert(t.checkpoints).values(**_values(record, t.checkpoints)))
        return True

    def list_checkpoints(self, job_id: str, *, after: str | None = None, limit: int = 10) -> Page[CheckpointRecord]:
        return self._page(t.checkpoints, CheckpointRecord, [t.checkpoints.c.job_id == job_id], after=after, limit=limit)

    def get_checkpoint(self, checkpoint_id: str) -> CheckpointRecord:
        return self._one(t.checkpoints, CheckpointRecord, f"checkpoint '{checkpoint_id}'", t.checkpoints.c.id == checkpoint_id)

    # --- fine-tuned models --------------------------------------------------------------------------------
    def add_model(self, record: ModelRecord) -> None:
        with self._tx() as conn:
            conn.execute(insert(t.models).values(**_values(record, t.models)))

    def get_model(self, model_id: str, *, project: str) -> ModelRecord:
        return self._one(t.models, ModelRecord, f"model '{model_id}'", t.models.c.id == model_id,
                         t.models.c.project == project)

    def list_models(self, *, project: str) -> list[ModelRecord]:
        query = select(t.models).where(t.models.c.project == project).order_by(t.models.c.seq)
        with self._tx() as conn:
            return [_record(ModelRecord, r) for r in conn.execute(query).all()]

    def delete_model(self, model_id: str, *, project: str) -> ModelRecord:
        record = self.get_model(model_id, project=project)
        with self._tx() as conn:
            conn.execute(delete(t.models).where(t.models.c.id == model_id))
        return record


def open_store(url: str | None = None, *, migrate_schema: bool = True) -> SqlStore:
    """The store at ``url``, default ``$TUNEFORGE_DATABASE_URL`` or the SQLite file under TUNEFORGE_HOME."""
    from tuneforge.settings import database_url

    return SqlStore(url or database_url(), migrate_schema=migrate_schema)
