"""Model use cases: list what tuneforge knows, generate text."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tuneforge.models.architectures import ARCHITECTURES
from tuneforge.models.resolve import BUILTINS


def list_models() -> dict[str, list[dict[str, Any]]]:
    """The builtin models and the architecture table, as plain data."""
    return {
        "builtins": [{"alias": b.alias, "description": b.description, "package": b.package} for b in BUILTINS.values()],
        "architectures": [asdict(a) for a in ARCHITECTURES.values()],
    }


def generate(
    model: str, *, prompt: str | None = None, messages: list[dict[str, str]] | None = None, max_new_tokens: int = 128
) -> str:
    """Greedy completion of a prompt (or a conversation) by a model reference or run directory."""
    from tuneforge.evaluation.generation import generate_answers
    from tuneforge.models.inference import load_for_inference

    loaded, tokenizer, _ = load_for_inference(model)
    conversation = messages or [{"role": "user", "content": prompt or ""}]
    return generate_answers(loaded, tokenizer, [conversation], max_new_tokens=max_new_tokens)[0]
