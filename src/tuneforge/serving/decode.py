"""The running batch of an engine: rows join between steps (continuous batching), generate one token per
step with the KV cache, and leave as they finish.

Rows are left-padded with an attention mask and positions counted from each row's first real token, so a
row gets the logits it would get alone: greedy answers equal single-request ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.serving.adapters import AdapterCache
from tuneforge.serving.engine import Delta, GenerationRequest
from tuneforge.serving.sampling import TextTracker, make_generator, next_tokens


class RunningBatch:
    """Sequences generating together over one base model and any of its loaded adapters.

    Only the engine's generation thread uses it.

    Args:
        adapters: The base model and its adapters (the model may gain adapters between steps).
        tokenizer: Decodes the answers.
        end_ids: End-of-turn token ids.
    """

    def __init__(self, adapters: AdapterCache, tokenizer: Any, *, end_ids: set[int]) -> None:
        self.adapters, self.tokenizer, self.end_ids = adapters, tokenizer, end_ids
        self.rows: list[GenerationRequest] = []
        self.trackers: list[TextTracker] = []
        self.generators: list[Any] = []
        self.cache: Any = None
        self.mask: Any = None  # [B, L] 1 for real tokens
        self.positions: Any = None  # [B, 1] position of each row's last token
        self.logits: Any = None  # [B, V] logits of each row's next token
        self.generated = 0

    @property
    def folders(self) -> set[Path]:
        """Adapter folders the running rows use (the cache must not drop them)."""
        return {r.adapter for r in self.rows if r.adapter is not None}

    def can_join(self) -> bool:
        """Whether new rows can join mid-generation (the cache holds plain full-attention layers)."""
        from transformers.cache_utils import DynamicLayer

        return self.cache is None or all(type(layer) is DynamicLayer for layer in self.cache.layers)

    def add(self, rows: list[GenerationRequest]) -> None:
        """Prefill ``rows`` and merge them into the batch."""
        import torch

        ids, mask = left_pad([r.prompt_ids for r in rows], pad_id=self.tokenizer.pad_token_id)  # [b, T]
        device = next(self.adapters.model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [b, T]
        with torch.inference_mode():
            out = self._forward(rows, input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
        self.trackers += [TextTracker(self.tokenizer, r.params, self.end_ids) for r in rows]
        self.generators += [make_generator(r.params) for r in rows]
        if self.cache is None:
            self.cache, self.mask, self.positions, self.logits = out.cache, mask, positions[:, -1:], out.logits[:, -1]
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            for old, new in zip(self.cache.layers, out.cache.layers):
                old.keys = torch.cat([pad_left(old.keys, width, dim=2), pad_left(new.keys, width, dim=2)])
                old.values = torch.cat([pad_left(old.values, width, dim=2), pad_left(new.values, width, dim=2)])
            self.mask = torch.cat([pad_left(self.mask, width, dim=1), pad_left(mask, width, dim=1)])
            self.positions = torch.cat([self.positions, positions[:, -1:]])
            self.logits = torch.cat([self.logits, out.logits[:, -1]])
        self.rows += rows

    def step(self) -> None:
        """Choose every row's next token, stream its text, drop finished rows, run the next forward pass."""
        import torch

        tokens = next_tokens(self.logits, [r.params for r in self.rows], self.generators)  # [B]
        for row, tracker, token in zip(self.rows, self.trackers, tokens.tolist()):
            text = tracker.add(token)
            row.stream.put(Delta(text, len(tracker.ids), tracker.finish_reason))
            self.generated += 1
        keep = [k for k, (row, tracker) in enumerate(zip(self.rows, self.trackers))
                if tracker.finish_reason is None and not row.stream.cancelled]
        if len(keep) < len(self.rows):
            self._select(keep)
            tokens = tokens[torch.tensor(keep, dtype=torch.long, device=tokens.device)]
        if not self.rows:
            return
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=-1)  # [B, L+1]
        self.positions = self.positions + 1
        with torch.inference_mode():
            out = self._forward(self.rows, input_ids=tokens[:, None], attention_mask=self.mask,
                                position_ids=self.positions, cache=self.cache)
        self.logits = out.logits[:, -1]

    def fail(self, error: BaseException) -> None:
        """End every row with ``error`` (the batch is unusable)."""
        for row in self.rows:
            row.stream.put(Delta("", 0, "error", error))
        self._select([])

    def _select(self, keep: list[int]) -> None:
        import torch

        self.rows = [self.rows[k] for k in keep]
        self.trackers = [self.trackers[k] for k in keep]
        self.generators = [self.generators[k] for k in keep]
        if not keep:
            self.cache = self.mask = self.positions = self.logits = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.logits = self.mask[index], self.positions[index], self.logits[index]

    def _forward(self, rows: list[GenerationRequest], **inputs: Any) -> Any:
        names = self.adapters.adapter_names([r.adapter for r in rows])
        extra = {"adapter_names": names} if names else {}
        return self.adapters.model(use_cache=True, **inputs, **extra)


def left_pad(prompts: list[list[int]], *, pad_id: int) -> tuple[Any, Any]:
    """``input_ids`` and ``attention_mask`` (``[B, T]``), prompts aligned to the right."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def pad_left(tensor: Any, width: int, *, dim: int) -> Any:
    """Zeros before ``tensor`` along ``dim`` up to ``width`` (masked positions: their values never count)."""
    import torch

    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
