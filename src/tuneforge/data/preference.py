"""Preference pairs: ``prompt`` / ``chosen`` / ``rejected`` and OpenAI's preference format.

Both become TRL's conversational form: ``prompt`` (a message list), ``chosen`` and ``rejected`` (one
assistant message each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.data.formats import ROLES
from tuneforge.data.readers import Record, read_records
from tuneforge.errors import DataError

PREFERENCE_HINT = (
    "give records with 'prompt', 'chosen' and 'rejected', or OpenAI's preference format "
    "('input': {'messages': [...]}, 'preferred_output', 'non_preferred_output')"
)


def load_preference_pairs(path: str | Path) -> list[dict[str, list[dict[str, str]]]]:
    """Read and validate every preference pair of a file; a bad record names its file and line."""
    return [_pair(record) for record in read_records(path)]


def _pair(record: Record) -> dict[str, list[dict[str, str]]]:
    data = record.data
    if {"prompt", "chosen", "rejected"} <= data.keys():
        prompt = data["prompt"]
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        chosen, rejected = data["chosen"], data["rejected"]
    elif {"input", "preferred_output", "non_preferred_output"} <= data.keys():
        prompt = (data["input"] or {}).get("messages") if isinstance(data["input"], dict) else None
        chosen, rejected = data["preferred_output"], data["non_preferred_output"]
    else:
        raise DataError(
            f"not a preference pair: keys {sorted(data)}", file=record.file, line=record.line, hint=PREFERENCE_HINT
        )
    return {
        "prompt": _messages(record, prompt, "prompt"),
        "chosen": _answer(record, chosen, "chosen"),
        "rejected": _answer(record, rejected, "rejected"),
    }


def _messages(record: Record, value: Any, key: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise DataError(f"'{key}' must be a string or a non-empty message list", file=record.file, line=record.line)
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise DataError(
                f"{key}[{index}] must be a message with a role ({', '.join(ROLES)}) and string content",
                file=record.file, line=record.line,
            )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _answer(record: Record, value: Any, key: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    messages = _messages(record, value, key)
    if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise DataError(f"'{key}' must end with a non-empty assistant message", file=record.file, line=record.line)
    return messages[-1:]
