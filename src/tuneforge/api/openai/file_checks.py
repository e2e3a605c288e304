"""Training files checked the way OpenAI checks them, with OpenAI's error codes.

``check_jsonl`` runs at upload (each line a JSON object); ``check_training_file`` runs when a job is
created (status ``validating_files``): the number of examples, the roles, the content, an assistant answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import DataError

MIN_EXAMPLES = 10
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class TrainingFileError(DataError):
    """A training file OpenAI would refuse: ``code`` and ``param`` go into the API's error envelope."""

    def __init__(self, message: str, *, code: str, param: str = "training_file", line: int | None = None) -> None:
        super().__init__(message, hint="fix the file and upload it again (see OpenAI's fine-tuning data format)")
        self.message, self.code, self.param, self.line = message, code, param, line


@dataclass(frozen=True)
class FileCheck:
    """What a valid training file holds."""

    examples: int
    format: str  # 'messages' or 'preference'


def check_jsonl(path: str | Path, *, param: str = "file") -> int:
    """Check that every non-empty line is a JSON object; returns the number of lines.

    Raises:
        TrainingFileError: ``invalid_training_file`` naming the first bad line.
    """
    count = 0
    for number, value in _lines(path, param=param):
        if not isinstance(value, dict):
            raise TrainingFileError(f"Invalid file format. Line {number} is not a JSON object.",
                                    code="invalid_training_file", param=param, line=number)
        count += 1
    if count == 0:
        raise TrainingFileError("Invalid file format. The file holds no examples.", code="invalid_training_file",
                                param=param)
    return count


def check_training_file(path: str | Path, *, method: str = "supervised", param: str = "training_file") -> FileCheck:
    """Validate a fine-tuning file for ``method`` (``supervised`` or ``dpo``).

    Raises:
        TrainingFileError: With OpenAI's code: ``invalid_training_file``, ``invalid_n_examples``,
            ``unrecognized_role``, ``missing_content`` or ``example_missing_assistant_message``.
    """
    examples = 0
    for number, value in _lines(path, param=param):
        if not isinstance(value, dict):
            raise TrainingFileError(f"Invalid file format. Example {number} is not a JSON object.",
                                    code="invalid_training_file", param=param, line=number)
        if method == "dpo":
            _check_preference(value, number, param)
        else:
            _check_messages(value.get("messages"), number, param, key="messages")
        examples += 1
    if examples < MIN_EXAMPLES:
        raise TrainingFileError(
            f"Training file has {examples} example(s), but must have at least {MIN_EXAMPLES} examples.",
            code="invalid_n_examples", param=param,
        )
    return FileCheck(examples=examples, format="preference" if method == "dpo" else "messages")


def _lines(path: str | Path, *, param: str) -> Any:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise TrainingFileError(f"Invalid file format. Line {number} is not UTF-8 text.",
                                        code="invalid_training_file", param=param, line=number) from None
            except json.JSONDecodeError as exc:
                raise TrainingFileError(f"Invalid file format. Line {number} is not valid JSON: {exc.msg}.",
                                        code="invalid_training_file", param=param, line=number) from None


def _check_messages(messages: Any, number: int, param: str, *, key: str, needs_assistant: bool = True) -> None:
    if not isinstance(messages, list) or not messages:
        raise TrainingFileError(f"Example {number}: '{key}' must be a non-empty list of messages.",
                                code="invalid_training_file", param=param, line=number)
    for index, message in enumerate(messages, start=1):
        where = f"Example {number}, message {index}"
        if not isinstance(message, dict):
            raise TrainingFileError(f"{where}: a message must be an object with 'role' and 'content'.",
                                    code="invalid_training_file", param=param, line=number)
        if message.get("role") not in ROLES:
            raise TrainingFileError(f"{where}: unrecognized role {message.get('role')!r}; use one of "
                                    f"{', '.join(ROLES)}.", code="unrecognized_role", param=param, line=number)
        content = message.get("content")
        if not message.get("tool_calls") and not message.get("function_call") and (
            not isinstance(content, (str, list)) or not content
        ):
            raise TrainingFileError(f"{where}: missing content.", code="missing_content", param=param, line=number)
    if needs_assistant and not any(m["role"] == "assistant" for m in messages):
        raise TrainingFileError(f"Example {number}: no assistant message to train on.",
                                code="example_missing_assistant_message", param=param, line=number)


def _check_preference(value: dict[str, Any], number: int, param: str) -> None:
    source = value.get("input")
    if not isinstance(source, dict):
        raise TrainingFileError(f"Example {number}: missing 'input' with 'messages' (preference format).",
                                code="invalid_training_file", param=param, line=number)
    _check_messages(source.get("messages"), number, param, key="input.messages", needs_assistant=False)
    for key in ("preferred_output", "non_preferred_output"):
        output = value.get(key)
        _check_messages(output, number, param, key=key)
        if len(output) != 1:
            raise TrainingFileError(f"Example {number}: '{key}' must hold exactly one assistant message.",
                                    code="invalid_training_file", param=param, line=number)
