"""Versioned training data: import, append, clean, split, diff, export and show (``tuneforge data``,
``/api/v1/data``). Reports and the files training reads are in :mod:`tuneforge.services.data_reports`.

Every operation makes a new immutable version (or returns the version that already holds the same
content) and records its parent, the operation, its options and what it removed.
"""

from __future__ import annotations

import difflib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneforge.data.clean import CleanSteps, clean_records
from tuneforge.data.dedup import best_matches, text_hash
from tuneforge.data.fields import record_hash, record_text
from tuneforge.errors import ConfigError, DataError
from tuneforge.registry.datasets import lineage, list_versions, parse_ref, read_version, resolve, store_version
from tuneforge.registry.dataset_files import read_rows, read_source
from tuneforge.services.platform import Platform
from tuneforge.storage.files import atomic_write_text
from tuneforge.storage.records import DataSetRecord, DataVersionRecord


class CleanOptions(BaseModel):
    """What ``tuneforge data clean`` does; each step is off unless asked for."""

    model_config = ConfigDict(extra="forbid")

    dedup: Literal["exact", "near"] | None = Field(None, description="Remove duplicates, keeping the first of each "
                                                   "cluster: exact (normalized text) or near (MinHash LSH).")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity from which records are near duplicates.")
    redact_pii: bool = Field(False, description="Replace emails, phones, card numbers, IPs and IBANs with <EMAIL>, ...")
    min_tokens: int | None = Field(None, ge=0, description="Drop records with fewer tokens.")
    max_tokens: int | None = Field(None, ge=1, description="Drop records with more tokens.")
    drop_empty: bool = Field(False, description="Drop records with an empty or white-space-only field.")
    model: str | None = Field(None, description="Count tokens with this model's tokenizer (default: ~4 chars/token).")


class SplitOptions(BaseModel):
    """How ``tuneforge data split`` divides a version into a train and a test data set."""

    model_config = ConfigDict(extra="forbid")

    test: float = Field(0.1, gt=0, lt=1, description="Fraction of the records for the test side.")
    seed: int = Field(42, description="Seed of the shuffle.")
    train_name: str | None = Field(None, description="Data set for the train side (default NAME-train).")
    test_name: str | None = Field(None, description="Data set for the test side (default NAME-test).")


@dataclass(frozen=True)
class DataOutcome:
    """A version an operation made (``created``) or found holding the same content; ``note`` says what
    happened beyond the version's own details (e.g. nothing new to append)."""

    version: DataVersionRecord
    created: bool
    note: dict[str, Any] = field(default_factory=dict)


def _store(platform: Platform, **kwargs: Any) -> DataOutcome:
    version, created = store_version(platform.store, platform.artifacts, **kwargs)
    return DataOutcome(version, created)


def records_of(platform: Platform, ref: str, *, project: str) -> tuple[DataVersionRecord, list[dict[str, Any]]]:
    """A version and its records."""
    version = resolve(platform.store, ref, project=project)
    return version, read_version(platform.artifacts, version)


def import_data(platform: Platform, path: str | Path, *, project: str, name: str) -> DataOutcome:
    """Import a file (JSONL, JSON, CSV, Parquet) or a saved ``datasets`` folder as a version of ``name``.

    Raises:
        DataError: A malformed record (file and line) or an unknown format; TooLargeError: over the limit.
    """
    records, fmt = read_source(path, max_bytes=platform.settings.max_upload_bytes)
    return _store(platform, project=project, name=name, records=records, fmt=fmt, operation="import",
                  params={"source": Path(path).name})


def append_data(platform: Platform, name: str, path: str | Path, *, project: str) -> DataOutcome:
    """Version V+1 = the newest version V + the records of ``path`` that V (or an earlier line) lacks.

    Raises:
        DataError: A malformed record, or records of another format than V's.
    """
    new, fmt = read_source(path, max_bytes=platform.settings.max_upload_bytes)
    return extend_data(platform, name, new, fmt=fmt, project=project, operation="append",
                       params={"source": Path(path).name}, source=str(path))


def extend_data(platform: Platform, name: str, new: list[dict[str, Any]], *, fmt: str, project: str, operation: str,
                params: dict[str, Any], source: str = "these records", create: bool = False) -> DataOutcome:
    """Version V+1 = the newest version V of ``name`` + the records of ``new`` it lacks; with ``create``, the
    first version when ``name`` has none yet.

    Raises:
        NotFoundError: No data set ``name`` (without ``create``).
        DataError: Records of another format than V's.
    """
    if create and not any(d.name == name for d in platform.store.list_data_sets(project=project)):
        return _store(platform, project=project, name=name, records=new, fmt=fmt, operation=operation, params=params)
    base, old = records_of(platform, name, project=project)
    if fmt != base.format:
        raise DataError(f"{source} holds {fmt} records; {base.ref} holds {base.format} records",
                        hint="append records of the same format, or import them as another data set")
    seen, added, skipped = {record_hash(r) for r in old}, [], 0
    for record in new:
        key = record_hash(record)
        skipped += key in seen
        if key not in seen:
            seen.add(key)
            added.append(record)
    details = {"base_version": base.version, "base_records": len(old), "added": len(added),
               "skipped_duplicates": skipped}
    if not added:
        return DataOutcome(base, False, {**details, "reason": "no new records"})
    return _store(platform, project=project, name=base.name, records=old + added, fmt=fmt, operation=operation,
                  params=params, details=details, parent=base)


def pairs_data(platform: Platform, path: str | Path, *, project: str, name: str) -> DataOutcome:
    """A preference (DPO) version of ``name`` from comparisons or ratings of answers (:mod:`tuneforge.data.pairs`).

    Raises:
        DataError: A malformed record, or no pair at all (every comparison a tie).
    """
    from tuneforge.data.pairs import preference_pairs

    pairs, counts = preference_pairs(read_rows(path, max_bytes=platform.settings.max_upload_bytes))
    if not pairs:
        raise DataError(f"{path} gives no preference pair: {counts}", hint="every comparison was a tie, or every "
                        "prompt's answers have the same rating")
    return _store(platform, project=project, name=name, records=pairs, fmt="preference", operation="annotate",
                  params={"source": Path(path).name}, details=counts)


def clean_data(platform: Platform, ref: str, options: CleanOptions, *, project: str) -> DataOutcome:
    """A cleaned version of ``ref`` (same data set) that records what it removed and redacted.

    Raises:
        ConfigError: No step asked for, or min_tokens above max_tokens.
    """
    steps = CleanSteps(dedup=options.dedup, threshold=options.threshold, redact_pii=options.redact_pii,
                       min_tokens=options.min_tokens, max_tokens=options.max_tokens, drop_empty=options.drop_empty)
    asked = [name for name, on in (("dedup", options.dedup), ("redact", options.redact_pii),
                                   ("filter", options.drop_empty or options.min_tokens is not None
                                    or options.max_tokens is not None)) if on]
    if not asked:
        raise ConfigError("nothing to clean: no step was asked for", field="clean",
                          hint="give --dedup exact|near, --redact-pii, --min-tokens, --max-tokens or --drop-empty")
    from tuneforge.services.data_reports import token_counter

    count, tokenizer = token_counter(platform, options.model)
    parent, records = records_of(platform, ref, project=project)
    result = clean_records(records, steps=steps, count_tokens=count)
    return _store(platform, project=project, name=parent.name, records=result.records, fmt=parent.format,
                  operation=asked[0] if len(asked) == 1 else "clean", parent=parent,
                  params={**options.model_dump(exclude_none=True), "tokenizer": tokenizer}, details=result.details())


def split_data(platform: Platform, ref: str, options: SplitOptions, *, project: str) -> tuple[DataOutcome, DataOutcome]:
    """Split a version into NAME-train and NAME-test versions; identical records stay on one side.

    Raises:
        DataError: One side would be empty.
    """
    parent, records = records_of(platform, ref, project=project)
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(text_hash(record_text(record)), []).append(index)
    order = list(groups.values())
    random.Random(options.seed).shuffle(order)
    wanted, test = round(len(records) * options.test), set()
    for group in order:
        if len(test) >= wanted:
            break
        test.update(group)
    if not test or len(test) == len(records):
        raise DataError(f"splitting the {len(records)} records of {parent.ref} with test={options.test} leaves the "
                        f"{'test' if not test else 'train'} side empty", hint="change --test, or add records")
    params = {"source": parent.ref, "test": options.test, "seed": options.seed}
    sides = []
    for side, name, chosen in (("train", options.train_name, False), ("test", options.test_name, True)):
        part = [r for i, r in enumerate(records) if (i in test) == chosen]
        sides.append(_store(platform, project=project, name=name or f"{parent.name}-{side}", records=part,
                            fmt=parent.format, operation="split", params={**params, "side": side}, parent=parent,
                            details={"records": len(part), "of": len(records)}))
    return sides[0], sides[1]


def diff_data(platform: Platform, a: str, b: str, *, project: str) -> dict[str, Any]:
    """Records added, removed and changed from version ``a`` to ``b``, aligned as ``diff`` aligns lines (on
    the records' hashes): a record replaced in place (edited, redacted) is changed; indices are 0-based."""
    old_version, old = records_of(platform, a, project=project)
    new_version, new = records_of(platform, b, project=project)
    matcher = difflib.SequenceMatcher(None, [record_hash(r) for r in old], [record_hash(r) for r in new],
                                      autojunk=False)
    added: list[int] = []
    removed: list[int] = []
    changed: list[dict[str, int]] = []
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag == "equal":
            continue
        pairs = _changed_pairs(old[a0:a1], new[b0:b1]) if tag == "replace" else {}
        changed.extend({"a": a0 + i, "b": b0 + j} for i, j in sorted(pairs.items()))
        removed.extend(a0 + i for i in range(a1 - a0) if i not in pairs)
        added.extend(b0 + j for j in range(b1 - b0) if j not in set(pairs.values()))
    changed.sort(key=lambda c: c["b"])
    return {"a": old_version.ref, "b": new_version.ref, "added": added, "removed": removed, "changed": changed,
            "unchanged": len(old) - len(removed) - len(changed)}


def _changed_pairs(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[int, int]:
    """Which records of a replaced block are one record changed: all of them, in place, when the block keeps
    its size (an edit or a redaction); else the pairs of similar text (MinHash, Jaccard >= 0.3: a short
    record keeps little more of its 5-grams once redacted)."""
    if len(old) == len(new):
        return {i: i for i in range(len(old))}
    return best_matches([record_text(r) for r in old], [record_text(r) for r in new], threshold=0.3)


def export_data(platform: Platform, ref: str, output: str | Path, *, project: str) -> Path:
    """Write a version to ``output`` (.jsonl or .json), through a temporary file.

    Raises:
        ConfigError: Another suffix.
    """
    output = Path(output)
    if output.suffix.lower() not in (".jsonl", ".json"):
        raise ConfigError(f"cannot export to {output.name}: use a .jsonl or .json file", field="output")
    _, records = records_of(platform, ref, project=project)
    if output.suffix.lower() == ".json":
        body = json.dumps(records, ensure_ascii=False, indent=1)
    else:
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(output, body)
    return output


def show_data(platform: Platform, ref: str, *, project: str, head: int = 5) -> dict[str, Any]:
    """A version with its first ``head`` records and its lineage (newest first)."""
    version, records = records_of(platform, ref, project=project)
    chain = lineage(platform.store, version, project=project)
    return {"version": version_view(version), "head": records[:head],
            "lineage": [{"ref": v.ref, "operation": v.operation, "records": v.records} for v in chain]}


def version_view(version: DataVersionRecord) -> dict[str, Any]:
    """A version as JSON (for the API and ``--json``), with its reference."""
    from dataclasses import asdict

    return {"ref": version.ref, **asdict(version)}


def list_data_versions(platform: Platform, name: str, *, project: str) -> list[DataVersionRecord]:
    """The versions of a data set, oldest first."""
    return list_versions(platform.store, parse_ref(name).name, project=project)


def list_data_sets(platform: Platform, *, project: str) -> list[DataSetRecord]:
    """The data sets of a project."""
    return platform.store.list_data_sets(project=project)
