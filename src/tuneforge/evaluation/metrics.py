"""Metrics over predictions and references."""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Exact-match normalization: strip, fold runs of white space, drop one final period.

    Case and inner punctuation are kept: for structured outputs (key=value lines, JSON, labels) they
    are part of the answer.
    """
    text = _SPACES.sub(" ", text.strip())
    return text[:-1].rstrip() if text.endswith(".") else text


def exact_match(predictions: list[str], references: list[str]) -> list[int]:
    """Per-example exact match (1 or 0) after :func:`normalize_answer`."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return [int(normalize_answer(p) == normalize_answer(r)) for p, r in zip(predictions, references)]
