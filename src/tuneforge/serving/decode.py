"""One batch generated to the end: left-padded prefill, then one token per step with the KV cache, rows
leaving the batch as they finish."""

from __future__ import annotations

from typing import Any

from tuneforge.serving.engine import Delta, GenerationRequest
from tuneforge.serving.sampling import TextTracker, make_generator, next_tokens


def generate_batch(model: Any, tokenizer: Any, rows: list[GenerationRequest], *, adapter_names: list[str] | None,
                   end_ids: set[int]) -> int:
    """Generate every row of a batch, streaming each row's text to its request's stream.

    Left padding with an attention mask and positions counted from each row's first real token give
    each row the logits it would get alone, so greedy answers equal single-request ones.

    Args:
        model: A causal LM, or a PeftModel when ``adapter_names`` is given.
        tokenizer: Decodes the answers.
        rows: The sequences (prompts and sampling parameters).
        adapter_names: One PEFT adapter name per row (``__base__`` for none), or ``None``.
        end_ids: End-of-turn token ids.

    Returns:
        Tokens generated over all rows.
    """
    import torch

    trackers = [TextTracker(tokenizer, r.params, end_ids) for r in rows]
    generators = [make_generator(r.params) for r in rows]
    input_ids, mask = left_pad([r.prompt_ids for r in rows], pad_id=tokenizer.pad_token_id)  # [B, T]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
    live = list(range(len(rows)))  # rows still generating, in batch order
    extra = {"adapter_names": adapter_names} if adapter_names else {}
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1, **extra)
        while True:
            tokens = next_tokens(out.logits[:, -1, :], [rows[i].params for i in live],
                                 [generators[i] for i in live])  # [B]
            for i, token in zip(live, tokens.tolist()):
                text = trackers[i].add(token)
                rows[i].stream.put(Delta(text, len(trackers[i].ids), trackers[i].finish_reason))
            keep = [k for k, i in enumerate(live) if trackers[i].finish_reason is None and not rows[i].stream.cancelled]
            if not keep:
                return sum(len(t.ids) for t in trackers)
            cache = out.cache
            if len(keep) < len(live):
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                tokens, mask, positions = tokens[index], mask[index], positions[index]
                live = [live[k] for k in keep]
                if adapter_names:
                    extra["adapter_names"] = [adapter_names[i] for i in live]
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)  # [B, T+1]
            positions = positions[:, -1:] + 1  # [B, 1]
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                        cache=cache, use_cache=True, **extra)


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
