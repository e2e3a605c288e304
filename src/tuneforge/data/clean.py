"""Clean a list of records: drop empty ones, redact personal data, filter by length, remove duplicates.

The steps run in that order (redaction first, so that two records differing only in an email address are
duplicates afterwards). Each removal is recorded with the record's index in the input, so the new version
says exactly what it dropped and why.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from tuneforge.data.dedup import exact_clusters, near_clusters
from tuneforge.data.fields import TokenCounter, estimate_tokens, map_texts, record_text, record_tokens, text_fields
from tuneforge.data.pii import PII_TYPES, find_pii, redact
from tuneforge.errors import ConfigError


@dataclass(frozen=True)
class CleanSteps:
    """What a clean does (each step off by default)."""

    dedup: Literal["exact", "near"] | None = None
    threshold: float = 0.8
    redact_pii: bool = False
    pii_types: tuple[str, ...] = PII_TYPES
    min_tokens: int | None = None
    max_tokens: int | None = None
    drop_empty: bool = False


@dataclass
class CleanResult:
    """The kept records and what happened to the others (indices are positions in the input)."""

    records: list[dict[str, Any]]
    removed: dict[str, list[Any]] = field(default_factory=dict)
    redacted: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """What a version made by this clean records about it."""
        counts = {reason: len(items) for reason, items in self.removed.items()}
        return {"kept": len(self.records), "removed_counts": counts, "removed": self.removed,
                "redacted": self.redacted}


def has_empty_field(record: dict[str, Any]) -> bool:
    """Whether a record has no text or a text field that is empty or only white space."""
    texts = [text for _, text in text_fields(record)]
    return not texts or any(not text.strip() for text in texts)


def clean_records(records: list[dict[str, Any]], *, steps: CleanSteps,
                  count_tokens: TokenCounter = estimate_tokens) -> CleanResult:
    """Apply ``steps`` to ``records`` (which stay unchanged) and say what was removed.

    Raises:
        ConfigError: ``min_tokens`` above ``max_tokens``.
    """
    if steps.min_tokens is not None and steps.max_tokens is not None and steps.min_tokens > steps.max_tokens:
        raise ConfigError(f"min_tokens {steps.min_tokens} is above max_tokens {steps.max_tokens}",
                          field="min_tokens", hint="lower --min-tokens or raise --max-tokens")
    kept = list(enumerate(records))
    result = CleanResult([])
    if steps.drop_empty:
        result.removed["empty"] = [i for i, r in kept if has_empty_field(r)]
        kept = [(i, r) for i, r in kept if not has_empty_field(r)]
    if steps.redact_pii:
        kept, result.redacted = _redact(kept, steps.pii_types)
    if steps.min_tokens is not None or steps.max_tokens is not None:
        kept = _filter_length(kept, steps, count_tokens, result.removed)
    if steps.dedup:
        kept = _dedup(kept, steps, result.removed)
    result.records = [r for _, r in kept]
    return result


def _redact(kept: list[tuple[int, dict]], types: tuple[str, ...]) -> tuple[list[tuple[int, dict]], dict]:
    spans: Counter[str] = Counter()
    changed = []

    def change(text: str) -> str:
        found = find_pii(text, types=types)
        spans.update(span.type for span in found)
        return redact(text, found) if found else text

    out = []
    for index, record in kept:
        redacted = map_texts(record, change)
        if redacted != record:
            changed.append(index)
        out.append((index, redacted))
    return out, {"records": changed, "spans": dict(sorted(spans.items()))}


def _filter_length(kept: list[tuple[int, dict]], steps: CleanSteps, count: TokenCounter,
                   removed: dict[str, list[Any]]) -> list[tuple[int, dict]]:
    short, long_, out = [], [], []
    for index, record in kept:
        tokens = record_tokens(record, count)
        if steps.min_tokens is not None and tokens < steps.min_tokens:
            short.append(index)
        elif steps.max_tokens is not None and tokens > steps.max_tokens:
            long_.append(index)
        else:
            out.append((index, record))
    removed["too_short"], removed["too_long"] = short, long_
    return out


def _dedup(kept: list[tuple[int, dict]], steps: CleanSteps, removed: dict[str, list[Any]]) -> list[tuple[int, dict]]:
    texts = [record_text(r) for _, r in kept]
    clusters = exact_clusters(texts)
    if steps.dedup == "near":
        clusters = near_clusters(texts, threshold=steps.threshold)
    drop = {member: cluster[0] for cluster in clusters for member in cluster[1:]}
    removed["duplicate"] = [{"index": kept[pos][0], "kept": kept[first][0]} for pos, first in sorted(drop.items())]
    return [item for pos, item in enumerate(kept) if pos not in drop]
