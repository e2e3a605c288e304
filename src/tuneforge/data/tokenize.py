"""Tokenize normalized examples: chat template, loss mask on assistant tokens, truncation, statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tuneforge.data.formats import Example
from tuneforge.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # label value that the loss skips (transformers' convention)
LISTED = 100  # overlong records named in the statistics (and the first 10 of them in messages)


@dataclass
class DatasetStats:
    """What the tokenized data looks like.

    Attributes:
        examples: Examples kept for training.
        tokens: Tokens in them (after truncation).
        trained_tokens: Tokens that carry a loss.
        truncated: Examples cut at ``max_seq_length``.
        dropped: Examples dropped: longer than ``max_seq_length`` under ``data.overlong: drop``, or left with no
            token to train on (after truncation, or an assistant turn of no tokens).
        overlong: Records longer than ``max_seq_length``, training and eval (before the policy applied; a
            record that mixing repeats counts once).
        overlong_policy: ``data.overlong``: truncate, drop or error.
        overlong_records: ``file:line`` of the first :data:`LISTED` overlong examples.
    """

    examples: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    dropped: int = 0
    overlong: int = 0
    overlong_policy: str = "truncate"
    overlong_records: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The statistics as a plain dict."""
        return asdict(self)

    def add_overlong(self, other: DatasetStats) -> None:
        """Count and name the overlong records of another split (eval) with these; a record in both counts once."""
        shared = [record for record in other.overlong_records if record in self.overlong_records]
        self.overlong += other.overlong - len(shared)
        self.overlong_records = (self.overlong_records + [r for r in other.overlong_records if r not in shared])[:LISTED]


def tokenize_examples(
    examples: list[Example],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    train_on_prompt: bool = False,
    overlong: str = "truncate",
) -> tuple[list[dict[str, list[int]]], DatasetStats]:
    """Tokenize examples into ``input_ids`` / ``attention_mask`` / ``labels`` rows.

    Chat examples go through the tokenizer's chat template; only assistant tokens (with weight 1)
    carry a loss unless ``train_on_prompt``. Raw texts are split into ``max_seq_length`` blocks (never overlong).

    Args:
        overlong: What happens to an example longer than ``max_seq_length``: ``truncate`` it, ``drop`` it, or
            raise an ``error`` naming every such example's file and line.

    Raises:
        DataError: ``overlong='error'`` and some examples are too long (the message lists their lines).
    """
    rows: list[dict[str, list[int]]] = []
    stats = DatasetStats(overlong_policy=overlong)
    seen: set[tuple[str, int]] = set()  # a record drawn several times by mixing counts once
    for example in examples:
        if example.text is not None:
            pieces = _text_blocks(example.text, tokenizer, max_seq_length)
        else:
            pieces = [_conversation(example, tokenizer, train_on_prompt)]
        for ids, labels in pieces:
            if len(ids) > max_seq_length:
                _count_overlong(stats, example, seen)
                if overlong == "drop":
                    stats.dropped += 1
                    continue
                ids, labels = ids[:max_seq_length], labels[:max_seq_length]
                stats.truncated += 1
            trained = sum(label != IGNORE_INDEX for label in labels)
            if trained == 0:
                stats.dropped += 1
                continue
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
            stats.examples += 1
            stats.tokens += len(ids)
            stats.trained_tokens += trained
    if overlong == "error" and stats.overlong:
        raise DataError(
            f"{stats.overlong} record(s) longer than max_seq_length {max_seq_length} tokens: "
            f"{describe_records(stats.overlong_records, total=stats.overlong)}",
            hint="shorten them, raise train.max_seq_length, or set data.overlong: truncate | drop",
        )
    return rows, stats


def overlong_message(stats: Mapping[str, Any], *, max_seq_length: int) -> str | None:
    """The line naming the records longer than ``max_seq_length`` and what was done with them, or ``None``.

    Args:
        stats: :meth:`DatasetStats.as_dict` (a task's ``TaskData.stats``); without ``overlong`` there is no line.
    """
    count, policy = stats.get("overlong", 0), stats.get("overlong_policy", "truncate")
    if not count:
        return None
    done = {"truncate": "truncated", "drop": "dropped"}.get(policy, policy)
    where = describe_records(stats.get("overlong_records", []), total=count)
    return f"{count} record(s) longer than max_seq_length {max_seq_length} tokens, {done} (data.overlong: {policy}): {where}"


def describe_records(records: list[str], *, total: int, shown: int = 10) -> str:
    """``a.jsonl lines 4, 9; b.jsonl line 2 (and 3 more)`` from ``file:line`` entries."""
    by_file: dict[str, list[str]] = {}
    for entry in records[:shown]:
        file, _, line = entry.rpartition(":")
        by_file.setdefault(file, []).append(line)
    parts = [f"{file} line{'s' if len(lines) > 1 else ''} {', '.join(lines)}" for file, lines in by_file.items()]
    rest = total - min(len(records), shown)
    return "; ".join(parts) + (f" (and {rest} more)" if rest > 0 else "")


def _count_overlong(stats: DatasetStats, example: Example, seen: set[tuple[str, int]]) -> None:
    if (example.file, example.line) in seen:
        return
    seen.add((example.file, example.line))
    stats.overlong += 1
    if len(stats.overlong_records) < LISTED:
        stats.overlong_records.append(f"{example.file}:{example.line}")


def render_prompt(messages: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase) -> str:
    """The chat-template text that asks the model for the next assistant message."""
    return tokenizer.apply_chat_template(_plain(messages), add_generation_prompt=True, tokenize=False)


def _conversation(example: Example, tokenizer: PreTrainedTokenizerBase, train_on_prompt: bool) -> tuple[list[int], list[int]]:
    messages = example.messages or []
    full = tokenizer.apply_chat_template(_plain(messages), tokenize=False)
    spans = []  # character spans of trained assistant replies (with their end-of-turn tokens)
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or not message.get("weight", 1):
            continue
        before = render_prompt(messages[:index], tokenizer)
        through = tokenizer.apply_chat_template(_plain(messages[: index + 1]), tokenize=False)
        if not (through.startswith(before) and full.startswith(through)):
            raise DataError(
                "the tokenizer's chat template does not render conversations prefix by prefix, so the "
                "assistant tokens cannot be masked",
                file=example.file,
                line=example.line,
                hint="set data.train_on_prompt: true, or use a model whose template renders each turn "
                "after the previous ones",
            )
        spans.append((len(before), len(through)))
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    if train_on_prompt:
        return ids, list(ids)
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE_INDEX
        for token, (begin, _) in zip(ids, encoded["offset_mapping"])
    ]
    return ids, labels


def _text_blocks(text: str, tokenizer: PreTrainedTokenizerBase, block: int) -> list[tuple[list[int], list[int]]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    return [(ids[i : i + block], ids[i : i + block]) for i in range(0, len(ids), block)]


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]
