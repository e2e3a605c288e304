"""Model use cases: the table of what tuneforge knows, generate text, chat."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tuneforge.models.architectures import ARCHITECTURES
from tuneforge.models.resolve import BUILTINS
from tuneforge.settings import Settings

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def model_table() -> dict[str, list[dict[str, Any]]]:
    """The builtin models and the architecture table, as plain data (``tuneforge models``)."""
    return {
        "builtins": [{"alias": b.alias, "description": b.description, "package": b.package} for b in BUILTINS.values()],
        "architectures": [asdict(a) for a in ARCHITECTURES.values()],
    }


class Chat:
    """A conversation partner: the model is loaded on the first reply and kept for every later one.

    Args:
        model: Model reference, run directory or adapter directory.
        settings: Where models are cached.
        max_new_tokens: Longest answer.
    """

    def __init__(self, model: str, *, settings: Settings, max_new_tokens: int = 128) -> None:
        self.model, self.settings, self.max_new_tokens = model, settings, max_new_tokens
        self.loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None

    def reply(self, messages: list[dict[str, str]]) -> str:
        """The greedy next assistant message of a conversation."""
        from tuneforge.evaluation.generation import generate_answers

        model, tokenizer = self._load()
        return generate_answers(model, tokenizer, [messages], max_new_tokens=self.max_new_tokens)[0]

    def _load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self.loaded is None:
            from tuneforge.models.inference import load_for_inference

            model, tokenizer, _ = load_for_inference(self.model, cache_dir=self.settings.model_cache_dir)
            self.loaded = (model, tokenizer)
        return self.loaded


def generate(
    model: str, *, settings: Settings, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
    max_new_tokens: int = 128,
) -> str:
    """Greedy completion of a prompt (or a conversation) by a model reference or run directory."""
    conversation = messages or [{"role": "user", "content": prompt or ""}]
    return Chat(model, settings=settings, max_new_tokens=max_new_tokens).reply(conversation)
