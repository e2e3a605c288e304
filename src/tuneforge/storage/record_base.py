"""The helpers every record module shares: ids, the clock, and a record from a row's mapping."""

from __future__ import annotations

import secrets
import time
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], mapping: Any) -> T:
    """A record of ``cls`` from a row's mapping (columns the record does not have are left out)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in mapping.items() if k in names})


def new_id(prefix: str) -> str:
    """A random public id such as ``ftjob-3f9a...`` (the prefixes follow OpenAI's)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> float:
    """Seconds since the epoch (all processes of a deployment share the clock of their machines)."""
    return time.time()
