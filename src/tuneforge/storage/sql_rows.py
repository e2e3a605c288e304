"""Rows to records and records to rows: shared by SqlStore and its mixins."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, TypeVar

from sqlalchemy import Row, Table

from tuneforge.storage.records import from_mapping

R = TypeVar("R")  # a record class


def record_of(cls: type[R], row: Row[Any]) -> R:
    """The frozen record of a row (columns the record lacks, such as ``seq``, are left out)."""
    return from_mapping(cls, row._mapping)


def values_of(record: object, table: Table) -> dict[str, Any]:
    """The column values of a record for ``table`` (enums as their values; ``seq`` is the database's)."""
    values = {k: v for k, v in dataclasses.asdict(record).items() if k in table.c and k != "seq"}
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}
