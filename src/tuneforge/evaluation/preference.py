"""Preference margins: how much more likely a model finds the chosen answer than the rejected one."""

from __future__ import annotations

from typing import Any

from tuneforge.data.tokenize import render_prompt


def answer_logprob(model: Any, tokenizer: Any, prompt: list[dict[str, str]], answer: list[dict[str, str]]) -> float:
    """Sum of the log-probabilities of the answer's tokens (with its end-of-turn) after the prompt."""
    import torch

    before = render_prompt(prompt, tokenizer)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
    prompt_ids = tokenizer(before, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()  # [T-1, vocab] predicts tokens 1..T-1
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logprobs[len(prompt_ids) - 1 :].sum())


def preference_margins(model: Any, tokenizer: Any, pairs: list[dict[str, Any]]) -> list[float]:
    """``log p(chosen) - log p(rejected)`` per pair (pairs in TRL's conversational form)."""
    model.eval()
    return [
        answer_logprob(model, tokenizer, p["prompt"], p["chosen"]) - answer_logprob(model, tokenizer, p["prompt"], p["rejected"])
        for p in pairs
    ]
