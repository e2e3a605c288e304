"""Batched greedy generation with left padding: deterministic answers for evaluation and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneforge.data.tokenize import render_prompt


def generate_answers(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, Any]]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 16,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Greedy-decode the next assistant message of each conversation.

    Args:
        model: A causal LM (plain or PEFT-wrapped).
        tokenizer: Its tokenizer (with a chat template).
        conversations: Message lists ending where the assistant should answer.
        max_new_tokens: Longest answer.
        batch_size: Conversations per forward batch.
        on_batch: Called with (done, total) after each batch.

    Returns:
        One stripped answer per conversation, in order.
    """
    import torch

    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        for start in range(0, len(conversations), batch_size):
            prompts = [render_prompt(c, tokenizer) for c in conversations[start : start + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.inference_mode():
                output = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=stop_ids(model, tokenizer),
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            answers.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
            if on_batch:
                on_batch(len(answers), len(conversations))
    finally:
        tokenizer.padding_side = side
    return answers


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn tokens: the tokenizer's EOS, the model's, and ChatML's ``<|im_end|>``."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(i for i in ids if i is not None)
