"""Record formats: detect them and turn each record into a conversation or a raw text.

Every chat-like format (messages, sharegpt, alpaca, prompt_completion, qa, classification) becomes a list of messages
``{"role", "content", "weight"}``; ``weight: 0`` on an assistant message means it is not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneforge.data.readers import Record
from tuneforge.errors import DataError

ROLES = ("system", "user", "assistant", "tool")
# ShareGPT's speaker names ("from") and the roles they become.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "observation": "tool", "function_call": "assistant"}
FORMAT_KEYS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "qa": ("context", "question", "answer"),
    "classification": ("text", "label"),
    "text": ("text",),
}


@dataclass(frozen=True)
class Example:
    """A normalized example: ``messages`` for chat-like formats, ``text`` for raw text."""

    messages: list[dict[str, Any]] | None
    text: str | None
    file: str
    line: int


def detect_format(record: Record) -> str:
    """Name the format of a record from its keys (the first format whose keys are all present)."""
    for name, keys in FORMAT_KEYS.items():
        if all(key in record.data for key in keys):
            return name
    raise DataError(
        f"cannot tell the data format from the keys {sorted(record.data)}",
        file=record.file,
        line=record.line,
        hint="use 'messages', 'conversations' (ShareGPT), 'instruction'/'output', 'prompt'/'completion', 'context'/'question'/'answer', "
        "'text'/'label' or 'text', "
        "or set data.format",
    )


def normalize(record: Record, fmt: str, *, system_prompt: str | None = None) -> Example:
    """Validate a record against its format and normalize it; errors name the file and line."""
    data = record.data
    missing = [key for key in FORMAT_KEYS[fmt] if key not in data]
    if missing:
        _fail(record, f"missing key '{missing[0]}' required by the {fmt} format")
    if fmt == "text":
        return Example(None, _string(record, "text"), record.file, record.line)
    if fmt == "messages":
        messages = _messages(record, data["messages"], "messages")
    elif fmt == "sharegpt":
        messages = _messages(record, _sharegpt(record), "conversations")
    elif fmt == "alpaca":
        instruction = _string(record, "instruction")
        extra = data.get("input") or ""
        if not isinstance(extra, str):
            _fail(record, "'input' must be a string")
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        messages = [_msg("user", prompt), _msg("assistant", _string(record, "output"))]
    elif fmt == "qa":
        prompt = f"Context: {_string(record, 'context')}\n\nQuestion: {_string(record, 'question')}"
        messages = [_msg("user", prompt), _msg("assistant", _string(record, "answer"))]
    elif fmt == "prompt_completion":
        messages = [_msg("user", _string(record, "prompt")), _msg("assistant", _string(record, "completion"))]
    else:  # classification
        label = data["label"]
        if isinstance(label, bool) or not isinstance(label, (str, int)) or str(label).strip() == "":
            _fail(record, f"'label' must be a non-empty string or an integer, got {label!r}")
        messages = [_msg("user", _string(record, "text")), _msg("assistant", str(label))]
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, _msg("system", system_prompt))
    return Example(messages, None, record.file, record.line)


def _sharegpt(record: Record) -> Any:
    """ShareGPT turns (``{"from": "human", "value": ...}``) as messages; other shapes fail in :func:`_messages`."""
    raw = record.data["conversations"]
    if not isinstance(raw, list):
        return raw
    messages = []
    for index, turn in enumerate(raw):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            _fail(record, f"conversations[{index}] must be an object with 'from' and 'value'")
        if turn["from"] not in SHAREGPT_ROLES:
            _fail(record, f"conversations[{index}].from is {turn['from']!r}; expected one of "
                  f"{', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
    return messages


def _messages(record: Record, raw: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        _fail(record, f"'{key}' must be a non-empty list")
    messages = []
    for index, message in enumerate(raw):
        where = f"{key}[{index}]"
        if not isinstance(message, dict):
            _fail(record, f"{where} must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            _fail(record, f"{where}.role is {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(content, str) or (role != "assistant" and not content):
            _fail(record, f"{where}.content must be a non-empty string")
        weight = message.get("weight", 1)
        if weight not in (0, 1):
            _fail(record, f"{where}.weight is {weight!r}; it must be 0 or 1")
        if weight == 0 and role != "assistant":
            _fail(record, f"{where}.weight applies to assistant messages only")
        messages.append({"role": role, "content": content, "weight": weight})
    if not any(m["role"] == "assistant" and m["weight"] for m in messages):
        _fail(record, "the conversation has no assistant message to train on")
    return messages


def _string(record: Record, key: str) -> str:
    value = record.data.get(key)
    if not isinstance(value, str) or not value.strip():
        _fail(record, f"'{key}' must be a non-empty string, got {value!r}")
    return value


def _msg(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content, "weight": 1}


def _fail(record: Record, reason: str) -> None:
    raise DataError(reason, file=record.file, line=record.line)
