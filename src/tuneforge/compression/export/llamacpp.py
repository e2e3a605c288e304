"""Run a GGUF file with llama.cpp (llama-cpp-python) behind transformers' ``generate`` interface.

The adapter lets the evaluation module and the latency timer measure the exported file as llama.cpp runs it:
prompts are the transformers tokenizer's token ids (the GGUF holds the same vocabulary), decoding is greedy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

_PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, seed=0, verbose=False,
            lora_path=sys.argv[3] if len(sys.argv) > 3 else None)
tokens = llm.tokenize(b"Hello, world", add_bos=True)
llm.eval(tokens)
next(iter(llm.generate(tokens, top_k=1, temp=0.0, reset=True)))
print("ok")
"""


def probe(path: Path, *, n_ctx: int = 256, timeout: float = 300, lora_path: Path | None = None) -> str | None:
    """Load ``path`` (and the GGUF LoRA adapter ``lora_path``) in llama.cpp in a child process and decode one
    token: None when that works, else why not.

    A llama-cpp-python build can crash the whole process (a segfault, not an exception) on a file it should
    run; probing in a child keeps that crash from taking the caller down with it.
    """
    try:
        extra = [str(lora_path)] if lora_path is not None else []
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(n_ctx), *extra], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not answer within {timeout:.0f} s"
    if done.returncode == 0 and "ok" in done.stdout:
        return None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return f"llama.cpp crashed ({name}) running {path.name}"
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return f"llama.cpp failed on {path.name}: {last}"


class LlamaCppModel(torch.nn.Module):
    """A GGUF model in llama.cpp with ``generate(input_ids, attention_mask, max_new_tokens, ...)``.

    Args:
        path: The .gguf file.
        config: The transformers config of the model (for ``generate``'s callers that read it).
        eos_token_ids: Tokens that end an answer.
        n_ctx: Context length to allocate.
        lora_path: A GGUF LoRA adapter that llama.cpp applies over the model at run time.
    """

    def __init__(self, path: Path, *, config: Any, eos_token_ids: list[int], n_ctx: int = 2048,
                 lora_path: Path | None = None) -> None:
        super().__init__()
        from llama_cpp import Llama
        from transformers import GenerationConfig

        # One dummy weight gives callers that ask next(model.parameters()).device an answer: the CPU.
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.config = config
        self.generation_config = GenerationConfig(eos_token_id=eos_token_ids)
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=os.cpu_count(), seed=0, verbose=False,
                         lora_path=str(lora_path) if lora_path is not None else None)

    def generate(self, input_ids: Any, attention_mask: Any = None, *, max_new_tokens: int = 64,
                 min_new_tokens: int = 0, eos_token_id: Any = None, pad_token_id: int | None = None,
                 streamer: Any = None, **_: Any) -> Any:
        """Greedy-decode each row (left padding removed); returns the prompts followed by the new tokens."""
        stops = set(eos_token_id if isinstance(eos_token_id, list) else
                    [eos_token_id] if eos_token_id is not None else self.generation_config.eos_token_id)
        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        answers = []
        for ids, keep in zip(input_ids, mask):
            prompt = ids[keep.bool()].tolist()
            if streamer is not None:
                streamer.put(torch.tensor([prompt]))
            answers.append(self._decode(prompt, max_new_tokens, min_new_tokens, stops, streamer))
        if streamer is not None:
            streamer.end()
        width = max(len(a) for a in answers)
        pad = pad_token_id if pad_token_id is not None else 0
        new = torch.tensor([a + [pad] * (width - len(a)) for a in answers], dtype=input_ids.dtype)
        return torch.cat([input_ids, new], dim=1)

    def _decode(self, prompt: list[int], max_new: int, min_new: int, stops: set, streamer: Any) -> list[int]:
        out: list[int] = []
        if max_new <= 0:
            return out
        for token in self.llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                       reset=True):
            if token in stops and len(out) >= min_new:
                out.append(token)
                break
            out.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
            if len(out) >= max_new:
                break
        return out

    def close(self) -> None:
        """Free llama.cpp's model and context now (its finalizer can fail at interpreter exit)."""
        self.llm.close()
