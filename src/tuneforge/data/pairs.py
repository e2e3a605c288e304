"""Preference pairs (DPO data) from human choices between answers to the same prompt.

Two shapes of input record are accepted:

- a comparison: ``{"prompt": ..., "answers": [A, B], "choice": 0 | 1 | "a" | "b" | "tie" | null}``;
- ratings: ``{"prompt": ..., "response": ..., "rating": NUMBER}``, one record per answer (as served traffic
  with feedback is logged); the records of one prompt give one pair, the best rated answer against the
  worst, when their ratings differ.

``prompt`` is a string or a message list. The result has ``prompt`` / ``chosen`` / ``rejected`` records, the
form :mod:`tuneforge.data.preference` reads for DPO training. Ties and prompts without a preference are
skipped and counted.
"""

from __future__ import annotations

import json
from typing import Any

from tuneforge.data.readers import Record
from tuneforge.errors import DataError

CHOICES = {0: 0, 1: 1, "a": 0, "b": 1, "A": 0, "B": 1}
SHAPES_HINT = ("give {'prompt', 'answers': [A, B], 'choice': 'a'|'b'|'tie'} or one {'prompt', 'response', "
               "'rating'} record per answer")


def preference_pairs(records: list[Record]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """DPO pairs from comparisons and ratings, in input order, and counts of what was used and skipped.

    Raises:
        DataError: A record of neither shape, or with a malformed field (naming its file and line).
    """
    pairs: list[dict[str, Any]] = []
    counts = {"from_comparisons": 0, "from_ratings": 0, "skipped_ties": 0, "skipped_prompts_without_preference": 0}
    rated: dict[str, list[tuple[float, str, Any]]] = {}
    for record in records:
        data = record.data
        prompt = _prompt(record)
        if {"answers", "choice"} <= data.keys():
            pair = _comparison(record, prompt)
            counts["from_comparisons" if pair else "skipped_ties"] += 1
            pairs.extend([pair] if pair else [])
        elif {"response", "rating"} <= data.keys():
            rated.setdefault(json.dumps(prompt, sort_keys=True), []).append(
                (_rating(record), _text(record, data["response"], "response"), prompt))
        else:
            raise DataError(f"not a comparison or a rating: keys {sorted(data)}", file=record.file,
                            line=record.line, hint=SHAPES_HINT)
    for answers in rated.values():
        best, worst = max(answers, key=lambda a: a[0]), min(answers, key=lambda a: a[0])
        if best[0] == worst[0]:
            counts["skipped_prompts_without_preference"] += 1
            continue
        pairs.append({"prompt": best[2], "chosen": best[1], "rejected": worst[1]})
        counts["from_ratings"] += 1
    return pairs, counts


def _prompt(record: Record) -> Any:
    prompt = record.data.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m for m in prompt):
        return prompt
    raise DataError(f"'prompt' must be a non-empty string or message list, got {prompt!r}", file=record.file,
                    line=record.line, hint=SHAPES_HINT)


def _comparison(record: Record, prompt: Any) -> dict[str, Any] | None:
    answers, choice = record.data["answers"], record.data["choice"]
    if not isinstance(answers, list) or len(answers) != 2:
        raise DataError("'answers' must list exactly two answers", file=record.file, line=record.line)
    if choice in (None, "tie"):
        return None
    if choice not in CHOICES or isinstance(choice, bool):
        raise DataError(f"'choice' is {choice!r}; use 0 or 1, 'a' or 'b', or 'tie'", file=record.file,
                        line=record.line)
    chosen = CHOICES[choice]
    texts = [_text(record, answer, "answers") for answer in answers]
    return {"prompt": prompt, "chosen": texts[chosen], "rejected": texts[1 - chosen]}


def _rating(record: Record) -> float:
    rating = record.data["rating"]
    if isinstance(rating, bool) or not isinstance(rating, (int, float)):
        raise DataError(f"'rating' must be a number, got {rating!r}", file=record.file, line=record.line,
                        hint="e.g. 1 for a thumbs-up and -1 for a thumbs-down")
    return float(rating)


def _text(record: Record, value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"each of '{key}' must be a non-empty string, got {value!r}", file=record.file,
                        line=record.line)
    return value
