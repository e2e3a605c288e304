"""Model use cases: the table of what tuneforge knows, generate text (streamed), chat."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tuneforge.data.tokenize import render_prompt
from tuneforge.errors import ConfigError
from tuneforge.evaluation.generation import stop_ids
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


@dataclass(frozen=True)
class Sampling:
    """How the next tokens are chosen: greedy (``temperature`` 0, deterministic) or sampled.

    Attributes:
        max_new_tokens: Longest answer.
        temperature: 0 for greedy decoding; above 0 samples with this temperature.
        top_p: Nucleus sampling: keep the smallest set of tokens whose probability reaches this (sampling only).
        system: A system message put before the conversation (unless it starts with one).
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    system: str | None = None

    def __post_init__(self) -> None:
        for name, value, ok in (("max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1),
                                ("temperature", self.temperature, self.temperature >= 0),
                                ("top_p", self.top_p, 0 < self.top_p <= 1)):
            if not ok:
                raise ConfigError(f"{name} {value} is out of range", field=name,
                                  hint="max_new_tokens >= 1, temperature >= 0 (0: greedy), 0 < top_p <= 1")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``model.generate`` for this choice."""
        if self.temperature == 0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_p": self.top_p}


class Chat:
    """A conversation partner: the model is loaded on the first reply and kept for every later one.

    Args:
        model: Model reference, run directory or adapter directory.
        settings: Where models are cached.
        sampling: Answer length, temperature, top-p and system message (default: greedy, 128 tokens).
    """

    def __init__(self, model: str, *, settings: Settings, sampling: Sampling | None = None) -> None:
        self.model, self.settings, self.sampling = model, settings, sampling or Sampling()
        self.loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None

    def reply(self, messages: list[dict[str, str]]) -> str:
        """The next assistant message of a conversation, whole."""
        return "".join(self.stream(messages)).strip()

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """The next assistant message, yielded in pieces of text as the model produces them.

        Generation runs in a thread feeding transformers' ``TextIteratorStreamer``; an error there is
        raised here once the stream ends.
        """
        from threading import Thread

        from transformers import TextIteratorStreamer

        model, tokenizer = self._load()
        batch = tokenizer(render_prompt(self._conversation(messages), tokenizer), return_tensors="pt",
                          add_special_tokens=False).to(next(model.parameters()).device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                model.generate(**batch, streamer=streamer, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=stop_ids(model, tokenizer), **self.sampling.generate_kwargs())
            except BaseException as exc:  # re-raised in the caller's thread below
                failures.append(exc)
                streamer.end()

        thread = Thread(target=run, daemon=True)
        thread.start()
        started = False
        for piece in streamer:
            piece = piece if started else piece.lstrip()
            started = started or bool(piece)
            if piece:
                yield piece
        thread.join()
        if failures:
            raise failures[0]

    def _conversation(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        system = self.sampling.system
        if system and not (messages and messages[0]["role"] == "system"):
            return [{"role": "system", "content": system}, *messages]
        return messages

    def _load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self.loaded is None:
            from tuneforge.models.inference import load_for_inference

            model, tokenizer, _ = load_for_inference(self.model, cache_dir=self.settings.model_cache_dir)
            model.eval()
            self.loaded = (model, tokenizer)
        return self.loaded


def generate(
    model: str, *, settings: Settings, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
    max_new_tokens: int = 128, sampling: Sampling | None = None,
) -> str:
    """A completion of a prompt (or a conversation) by a model reference or run directory (greedy by default)."""
    conversation = messages or [{"role": "user", "content": prompt or ""}]
    return Chat(model, settings=settings, sampling=sampling or Sampling(max_new_tokens=max_new_tokens)).reply(conversation)
