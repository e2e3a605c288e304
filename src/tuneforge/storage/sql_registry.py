"""The model registry's part of :class:`tuneforge.storage.sql.SqlStore` (kept apart to keep sql.py short).

Numbering and alias moves are serialized per registered model: PostgreSQL locks the model's row
(``UPDATE ... latest_version + 1`` or ``SELECT ... FOR UPDATE``), SQLite takes the write lock up front
(``BEGIN IMMEDIATE``, see ``storage.engine``). So two registrations never get one number and two alias
moves at once are both recorded, the second ``from`` where the first went.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from tuneforge.errors import ConflictError, NotFoundError
from tuneforge.storage import schema as t
from tuneforge.storage.records import (
    AliasMoveRecord, ModelAliasRecord, ModelVersionRecord, RegisteredModelRecord, VersionStatus, now,
    rollback_target, split_of,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

_RM, _MV, _MA, _MOVES = t.registered_models, t.model_versions, t.model_aliases, t.model_alias_moves


class RegistrySql:
    """Store methods of the model registry; mixed into SqlStore, which brings ``_session`` and ``is_postgres``."""

    is_postgres: bool
    if TYPE_CHECKING:
        def _session(self, operation: str, **kwargs: Any) -> AbstractContextManager[Connection]: ...

    # --- versions -------------------------------------------------------------------------------------
    def add_model_version(self, record: ModelVersionRecord) -> ModelVersionRecord:
        key = (_RM.c.project == record.project, _RM.c.name == record.name)
        # The name's row exists afterwards (a concurrent first add waits for the other, then does nothing);
        # the bump then takes the row's lock, so concurrent adds count one after another.
        first = self._insert_ignore(_RM).values(project=record.project, name=record.name, latest_version=0,
                                                created_by=record.created_by, created_at=now())
        bump = update(_RM).where(*key).values(latest_version=_RM.c.latest_version + 1)
        with self._session(f"add a version of model '{record.name}'") as conn:
            conn.execute(first.on_conflict_do_nothing())
            conn.execute(bump)
            number = conn.execute(select(_RM.c.latest_version).where(*key)).scalar_one()
            added = dataclasses.replace(record, version=number)
            conn.execute(insert(_MV).values(**_row(added, _MV)))
        return added

    def get_model_version(self, *, project: str, name: str, version: int) -> ModelVersionRecord:
        with self._session(f"read version {version} of model '{name}'") as conn:
            return _version(conn, project, name, version)

    def list_model_versions(self, *, project: str | None, name: str | None = None, dataset_sha256: str | None = None,
                            artifact_sha256: str | None = None, job_id: str | None = None,
                            fine_tuned_model: str | None = None) -> list[ModelVersionRecord]:
        filters = {"project": project, "name": name, "dataset_sha256": dataset_sha256,
                   "artifact_sha256": artifact_sha256, "job_id": job_id, "fine_tuned_model": fine_tuned_model}
        conditions = [_MV.c[column] == value for column, value in filters.items() if value is not None]
        query = select(_MV).where(*conditions).order_by(_MV.c.project, _MV.c.name, _MV.c.version)
        with self._session("list model versions") as conn:
            return [_from_row(ModelVersionRecord, r) for r in conn.execute(query).all()]

    def get_registered_model(self, *, project: str, name: str) -> RegisteredModelRecord:
        with self._session(f"read model '{name}'") as conn:
            return _from_row(RegisteredModelRecord, _model_row(conn, project, name))

    def list_registered_models(self, *, project: str) -> list[RegisteredModelRecord]:
        query = select(_RM).where(_RM.c.project == project).order_by(_RM.c.name)
        with self._session("list registered models") as conn:
            return [_from_row(RegisteredModelRecord, r) for r in conn.execute(query).all()]

    def update_model_version(self, *, project: str, name: str, version: int, scores: dict | None = None,
                             pruned_at: float | None = None) -> ModelVersionRecord:
        with self._session(f"update version {version} of model '{name}'") as conn:
            if pruned_at is not None:  # under the model's lock: no alias moves onto it meanwhile
                self._lock_model(conn, project, name)
                key = (_MA.c.project == project, _MA.c.name == name)
                rows = conn.execute(select(_MA.c.alias, _MA.c.version, _MA.c.weights).where(*key)).all()
                aliases = [r.alias for r in rows if version in (split_of(r.weights) or {r.version: 1.0})]
                if aliases:
                    raise ConflictError(f"version {version} of model '{name}' is aliased ({', '.join(aliases)}); "
                                        "it cannot be pruned", hint="move the alias first")
            current = _version(conn, project, name, version, lock=self.is_postgres)
            values: dict[str, Any] = {}
            if scores:
                values["scores"] = {**current.scores, **scores}
            if pruned_at is not None:
                values.update(status=VersionStatus.PRUNED.value, pruned_at=pruned_at)
            if values:
                conn.execute(update(_MV).where(_MV.c.id == current.id).values(**values))
            return _version(conn, project, name, version)

    # --- aliases --------------------------------------------------------------------------------------
    def move_model_alias(self, *, project: str, name: str, alias: str, version: int | None,
                         actor: str) -> AliasMoveRecord:
        with self._session(f"move alias '{alias}' of model '{name}'") as conn:
            self._lock_model(conn, project, name)
            return _move(conn, project, name, alias, version, actor=actor, action="delete" if version is None else "set")

    def rollback_model_alias(self, *, project: str, name: str, alias: str, actor: str) -> AliasMoveRecord:
        with self._session(f"roll back alias '{alias}' of model '{name}'") as conn:
            self._lock_model(conn, project, name)
            moves = _moves(conn, project, name, alias)
            if not moves:
                raise NotFoundError(f"model '{name}' has no alias '{alias}'",
                                    hint=f"list its aliases with 'tuneforge registry show {name}'")
            target = rollback_target(moves)
            if target is None:
                raise ConflictError(f"alias '{alias}' of model '{name}' has no earlier version to roll back to",
                                    hint=f"point it at a version with 'tuneforge registry alias {name} VERSION {alias}'")
            return _move(conn, project, name, alias, target, actor=actor, action="rollback")

    def split_model_alias(self, *, project: str, name: str, alias: str, weights: dict[int, float],
                          actor: str) -> AliasMoveRecord:
        control = max(sorted(weights), key=lambda v: weights[v])  # the heaviest version (the lowest on a tie)
        with self._session(f"split alias '{alias}' of model '{name}'") as conn:
            self._lock_model(conn, project, name)
            for version in weights:
                _move_check(conn, project, name, version)
            pairs = [[version, weights[version]] for version in sorted(weights)]
            return _move(conn, project, name, alias, control, actor=actor, action="split", weights=pairs)

    def list_model_aliases(self, *, project: str, name: str | None = None) -> list[ModelAliasRecord]:
        conditions = [_MA.c.project == project] + ([_MA.c.name == name] if name is not None else [])
        query = select(_MA).where(*conditions).order_by(_MA.c.name, _MA.c.alias)
        with self._session("list model aliases") as conn:
            return [_from_row(ModelAliasRecord, r) for r in conn.execute(query).all()]

    def list_alias_moves(self, *, project: str, name: str, alias: str | None = None) -> list[AliasMoveRecord]:
        with self._session(f"list the alias moves of model '{name}'") as conn:
            return _moves(conn, project, name, alias)

    # --- helpers --------------------------------------------------------------------------------------
    def _insert_ignore(self, table: Any) -> Any:
        """An INSERT that can be told ``on_conflict_do_nothing`` (each dialect has its own)."""
        if self.is_postgres:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(table)

    def _lock_model(self, conn: Connection, project: str, name: str) -> None:
        _model_row(conn, project, name, lock=self.is_postgres)


def _row(record: object, table: Any) -> dict[str, Any]:
    values = {k: v for k, v in dataclasses.asdict(record).items() if k in table.c and k != "seq"}
    return {k: getattr(v, "value", v) for k, v in values.items()}


def _from_row(cls: type, row: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _model_row(conn: Connection, project: str, name: str, *, lock: bool = False) -> Any:
    query = select(_RM).where(_RM.c.project == project, _RM.c.name == name)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFoundError(f"no registered model '{name}'", hint="list them with 'tuneforge registry list'")
    return row


def _version(conn: Connection, project: str, name: str, version: int, *, lock: bool = False) -> ModelVersionRecord:
    query = select(_MV).where(_MV.c.project == project, _MV.c.name == name, _MV.c.version == version)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFoundError(f"model '{name}' has no version {version}",
                            hint=f"list its versions with 'tuneforge registry show {name}'")
    return _from_row(ModelVersionRecord, row)


def _moves(conn: Connection, project: str, name: str, alias: str | None) -> list[AliasMoveRecord]:
    conditions = [_MOVES.c.project == project, _MOVES.c.name == name]
    if alias is not None:
        conditions.append(_MOVES.c.alias == alias)
    rows = conn.execute(select(_MOVES).where(*conditions).order_by(_MOVES.c.seq)).all()
    return [_from_row(AliasMoveRecord, r) for r in rows]


def _move_check(conn: Connection, project: str, name: str, version: int) -> None:
    """A version an alias may point at: it exists and is still stored."""
    if _version(conn, project, name, version).status is VersionStatus.PRUNED:
        raise ConflictError(f"version {version} of model '{name}' was pruned: its artifact is deleted",
                            hint="point the alias at a version that is still stored")


def _move(conn: Connection, project: str, name: str, alias: str, version: int | None, *, actor: str,
          action: str, weights: list[list[float]] | None = None) -> AliasMoveRecord:
    """Point the alias (the model's row is locked by the caller) and append the move; a move to one version
    ends a split (``weights`` back to ``None``)."""
    if version is not None:
        _move_check(conn, project, name, version)
    key = (_MA.c.project == project, _MA.c.name == name, _MA.c.alias == alias)
    current = conn.execute(select(_MA.c.version).where(*key)).scalar()
    stamp = now()
    if version is None:
        if current is None:
            raise NotFoundError(f"model '{name}' has no alias '{alias}'")
        conn.execute(delete(_MA).where(*key))
    elif current is None:
        conn.execute(insert(_MA).values(project=project, name=name, alias=alias, version=version, updated_by=actor,
                                        updated_at=stamp, weights=weights))
    else:
        conn.execute(update(_MA).where(*key).values(version=version, updated_by=actor, updated_at=stamp,
                                                    weights=weights))
    move = AliasMoveRecord(project=project, name=name, alias=alias, from_version=current, to_version=version,
                           action=action, actor=actor, created_at=stamp, weights=weights)
    seq = conn.execute(insert(_MOVES).values(**_row(move, _MOVES)).returning(_MOVES.c.seq)).scalar()
    return dataclasses.replace(move, seq=seq)
