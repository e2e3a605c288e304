"""Choosing each row's next token (greedy, temperature, top-p, a per-sequence seed) and finding where its
text ends (end-of-turn tokens, stop strings, max_tokens), emitting only text that no stop string can still
claim."""

from __future__ import annotations

from typing import Any

from tuneforge.serving.config import SamplingParams


def make_generator(params: SamplingParams) -> Any:
    """A torch Generator for a sampled sequence (seeded when the request gives a seed), else ``None``."""
    import torch

    if params.greedy:
        return None
    generator = torch.Generator()
    if params.seed is not None:
        generator.manual_seed(params.seed)
    else:
        generator.seed()
    return generator


def next_tokens(logits: Any, params: list[SamplingParams], generators: list[Any]) -> Any:
    """The next token of every row.

    Args:
        logits: ``[B, V]`` float logits of the last position.
        params: One per row.
        generators: One per row (``None`` for greedy rows).

    Returns:
        ``[B]`` token ids.
    """
    import torch

    chosen = logits.argmax(dim=-1)  # [B]
    for row, (p, generator) in enumerate(zip(params, generators)):
        if p.greedy:
            continue
        probs = torch.softmax(logits[row].float().cpu() / p.temperature, dim=-1)  # [V], where the generator is
        if p.top_p < 1.0:
            probs = top_p_filter(probs, p.top_p)
        chosen[row] = torch.multinomial(probs, 1, generator=generator)[0]
    return chosen


def top_p_filter(probs: Any, top_p: float) -> Any:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p`` (renormalized); ``[V]``."""
    import torch

    sorted_probs, order = probs.sort(descending=True)
    before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked above each one
    sorted_probs[before >= top_p] = 0.0
    kept = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return kept / kept.sum()


class TextTracker:
    """The decoded answer of one sequence; says what is safe to emit and whether a stop string ended it.

    Args:
        tokenizer: Decodes the answer's tokens.
        params: Its stop strings and max_tokens.
        end_ids: End-of-turn token ids.
    """

    def __init__(self, tokenizer: Any, params: SamplingParams, end_ids: set[int]) -> None:
        self.tokenizer, self.params, self.end_ids = tokenizer, params, end_ids
        self.ids: list[int] = []
        self.emitted = 0  # characters of the answer already handed out
        self.finish_reason: str | None = None

    def add(self, token: int) -> str:
        """Take the next token; return the text that may be emitted now (``finish_reason`` set when done)."""
        if token in self.end_ids:
            self.finish_reason = "stop"
            return self._flush(self._text())
        self.ids.append(token)
        text = self._text()
        cut = self._stop_at(text)
        if cut is not None:
            self.finish_reason = "stop"
            return self._flush(text[:cut])
        if len(self.ids) >= self.params.max_tokens:
            self.finish_reason = "length"
            return self._flush(text)
        safe = len(text) - self._held_back(text)
        partial = len(text) - len(text.rstrip("\ufffd"))  # part of a multi-byte character: wait for the rest
        safe = min(safe, len(text) - partial)
        return self._flush(text[:max(safe, self.emitted)])

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _flush(self, text: str) -> str:
        new = text[self.emitted:]
        self.emitted = max(self.emitted, len(text))
        return new

    def _stop_at(self, text: str) -> int | None:
        # a stop string may only be found in text not yet emitted (or straddling its edge)
        start = max(0, self.emitted - max((len(s) for s in self.params.stop), default=0))
        hits = [i for s in self.params.stop if (i := text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _held_back(self, text: str) -> int:
        """Characters at the end of ``text`` that could begin a stop string."""
        longest = 0
        for stop in self.params.stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
