"""The text of a record, field by field, whatever its format; record identity; token counts.

A record is a JSON object as read (``data/readers.py``). Its text fields are its string leaves, named by
path (``messages[1].content``, ``instruction``); the structural keys ``role`` and ``weight`` are not text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from tuneforge.data.formats import detect_format
from tuneforge.data.readers import Record
from tuneforge.errors import DataError

NOT_TEXT = frozenset({"role", "weight"})
PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
TokenCounter = Callable[[str], int]


def text_fields(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(path, text)`` for every string leaf of a record (``messages[0].content``), in order."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in NOT_TEXT:
                yield from text_fields(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from text_fields(item, f"{path}[{index}]")


def record_text(record: dict[str, Any]) -> str:
    """All the text of a record, one field per line."""
    return "\n".join(text for _, text in text_fields(record))


def map_texts(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of a record with ``change`` applied to every text field."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: v if k in NOT_TEXT else map_texts(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [map_texts(item, change) for item in value]
    return value


def canonical(record: dict[str, Any]) -> str:
    """The normalized form of a record: compact JSON with sorted keys (one line of a version's file)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def record_hash(record: dict[str, Any]) -> str:
    """The sha256 of a record's normalized form: two records are the same record when these agree."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def estimate_tokens(text: str) -> int:
    """Tokens a text would take without a tokenizer: about 4 characters per token (rounded up)."""
    return math.ceil(len(text) / 4)


def record_tokens(record: dict[str, Any], count: TokenCounter = estimate_tokens) -> int:
    """Tokens of all the text of a record (the chat template's own tokens not included)."""
    return sum(count(text) for _, text in text_fields(record))


def detect_records_format(records: list[dict[str, Any]], *, source: str = "data") -> str:
    """The format of a list of records (that of the first; ``preference`` for prompt/chosen/rejected pairs).

    Raises:
        DataError: An empty list, or a first record of no known format.
    """
    if not records:
        raise DataError("the data holds no records", file=source, hint="add at least one record")
    if all(key in records[0] for key in PREFERENCE_KEYS):
        return "preference"
    return detect_format(Record(records[0], source, 1))

