"""Score a loaded model on chat examples."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tuneforge.data.formats import Example
from tuneforge.evaluation.generation import generate_answers
from tuneforge.evaluation.metrics import exact_match


@dataclass
class ExactMatchResult:
    """Exact-match accuracy with the predictions behind it."""

    accuracy: float
    correct: list[int]
    predictions: list[str]
    references: list[str]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def split_reference(example: Example) -> tuple[list[dict[str, Any]], str]:
    """The prompt messages and the reference answer (the last assistant message) of an example."""
    messages = example.messages or []
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]["content"]


def evaluate_exact_match(
    model: Any, tokenizer: Any, examples: list[Example], *, max_new_tokens: int = 64, batch_size: int = 16,
    on_batch: Any = None,
) -> ExactMatchResult:
    """Greedy-generate an answer for each example and compare it with the reference."""
    prompts, references = zip(*(split_reference(e) for e in examples))
    started = time.perf_counter()
    predictions = generate_answers(
        model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size, on_batch=on_batch
    )
    correct = exact_match(predictions, list(references))
    return ExactMatchResult(
        accuracy=sum(correct) / len(correct),
        correct=correct,
        predictions=predictions,
        references=list(references),
        seconds=round(time.perf_counter() - started, 2),
    )
