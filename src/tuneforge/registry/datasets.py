"""Dataset versions over the Store: references, content-addressed version files, lineage.

A version's records are stored once as a JSONL artifact named by the sha256 of its normalized records
(:func:`tuneforge.data.fields.canonical`, one per line); the Store keeps its row (format, counts, token
statistics, parent, operation). ``NAME:3`` is version 3 of data set NAME, ``NAME@latest`` and ``NAME`` its
newest version.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from typing import Any

from tuneforge.data.fields import canonical, estimate_tokens, record_tokens
from tuneforge.errors import ConfigError, DataError, NotFoundError, suggest
from tuneforge.storage.artifacts import Artifacts
from tuneforge.storage.base import Store
from tuneforge.storage.records import DataVersionRecord, new_id

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
OPERATIONS = ("import", "clean", "dedup", "redact", "filter", "split", "append", "annotate", "merge",
              "collect")


@dataclass(frozen=True)
class DataRef:
    """A parsed reference: a data set name and a version number (``None``: the newest)."""

    name: str
    version: int | None = None


def check_name(name: str, *, field: str = "name") -> str:
    """A valid data set name (letters, digits, ``.``, ``_``, ``-``; up to 128) or a ConfigError."""
    if not NAME.match(name):
        raise ConfigError(f"invalid data set name {name!r}", field=field,
                          hint="use letters, digits, '.', '_' or '-' (no ':' or '@': they select versions)")
    return name


def parse_ref(ref: str) -> DataRef:
    """``NAME:3`` / ``NAME@latest`` / ``NAME`` as a :class:`DataRef`.

    Raises:
        ConfigError: Neither form, or a version that is not a positive number.
    """
    name, version = ref, None
    if "@" in ref:
        name, tag = ref.rsplit("@", 1)
        if tag != "latest":
            raise ConfigError(f"unknown version tag '@{tag}' in {ref!r}", field="dataset",
                              hint="use NAME@latest, NAME:VERSION or NAME")
    elif ":" in ref:
        name, number = ref.rsplit(":", 1)
        if not number.isdigit() or int(number) < 1:
            raise ConfigError(f"version {number!r} in {ref!r} is not a positive number", field="dataset",
                              hint="use NAME:VERSION such as mydata:3, or NAME@latest")
        version = int(number)
    return DataRef(check_name(name, field="dataset"), version)


def resolve(store: Store, ref: str | DataRef, *, project: str) -> DataVersionRecord:
    """The version a reference names.

    Raises:
        NotFoundError: No such data set (with the closest name) or version (with the versions there are).
    """
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    try:
        return store.get_data_version(project=project, name=parsed.name, version=parsed.version)
    except NotFoundError:
        versions = [v.version for v in list_versions(store, parsed.name, project=project)]
        raise NotFoundError(f"data set '{parsed.name}' has no version {parsed.version}",
                            hint=f"its versions are {', '.join(map(str, versions))} "
                                 f"(or use {parsed.name}@latest)") from None


def list_versions(store: Store, name: str, *, project: str) -> list[DataVersionRecord]:
    """The versions of a data set, oldest first.

    Raises:
        NotFoundError: No such data set (naming the closest one).
    """
    try:
        return store.list_data_versions(project=project, name=name)
    except NotFoundError:
        names = [d.name for d in store.list_data_sets(project=project)]
        close = suggest(name, names)
        raise NotFoundError(f"no data set '{name}'" + (f"; {close}" if close else ""),
                            hint="list them with 'tuneforge data versions'; import one with "
                                 "'tuneforge data import FILE --name NAME'") from None


def version_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Token statistics of a version (estimated at about 4 characters per token; the report can use a
    model's tokenizer)."""
    lengths = sorted(record_tokens(r, estimate_tokens) for r in records) or [0]
    return {"tokenizer": "estimate (4 characters per token)", "tokens": sum(lengths), "min_tokens": lengths[0],
            "mean_tokens": round(statistics.fmean(lengths), 2), "max_tokens": lengths[-1],
            "p95_tokens": lengths[min(len(lengths) - 1, int(len(lengths) * 0.95))]}


def store_version(store: Store, artifacts: Artifacts, *, project: str, name: str, records: list[dict[str, Any]],
                  fmt: str, operation: str, params: dict[str, Any] | None = None,
                  details: dict[str, Any] | None = None, parent: DataVersionRecord | None = None,
                  ) -> tuple[DataVersionRecord, bool]:
    """Store ``records`` as a new version of ``name`` (its file first, atomically; then its row).

    Returns the version and whether it is new: content the data set already holds returns that version.

    Raises:
        DataError: No records (a version is never empty).
    """
    check_name(name)
    if not records:
        raise DataError(f"the {operation} would leave data set '{name}' with no records",
                        hint="keep at least one record (loosen the options)")
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    body = "".join(canonical(r) + "\n" for r in records).encode()
    sha256, _ = artifacts.put_bytes(body)
    record = DataVersionRecord(
        id=new_id("dver"), project=project, name=name, sha256=sha256, format=fmt, records=len(records),
        operation=operation, stats=version_stats(records), params=params or {}, details=details or {},
        parent_id=parent.id if parent else None)
    return store.add_data_version(record)


def read_version(artifacts: Artifacts, version: DataVersionRecord) -> list[dict[str, Any]]:
    """The records of a version, in order."""
    with artifacts.open(version.sha256).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def lineage(store: Store, version: DataVersionRecord, *, project: str) -> list[DataVersionRecord]:
    """A version and its ancestors, newest first (following ``parent_id`` across data sets)."""
    chain = [version]
    while chain[-1].parent_id and len(chain) < 1000:
        chain.append(store.get_data_version_by_id(chain[-1].parent_id, project=project))
    return chain
