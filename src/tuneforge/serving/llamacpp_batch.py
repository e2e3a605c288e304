"""llama.cpp's own multi-sequence batches (its C API through llama-cpp-python's ``llama_cpp`` module).

One context holds up to ``slots`` sequences (``n_seq_max``), each in its own KV stream of ``n_ctx`` cells.
Every step is one ``llama_decode`` of a ``llama_batch`` whose tokens carry their sequence id: the next token
of each running sequence, and the prompt (or the prompt's uncached rest) of sequences that join, as
llama.cpp's server does. A finished sequence's cells stay in its slot as a prompt-prefix cache until the slot
serves another prompt (``llama_memory_seq_rm`` drops what does not match).

Batched greedy answers equal single-request ones only with per-sequence streams and flash attention.
Measured on SmolLM2-135M (Q4_1, 8 prompts of 35-38 tokens prefilled in one batch vs each alone): one unified
KV buffer (``kv_unified``) changed the first token's logits by up to 1.03 (on logits up to 25) even for a
prompt decoded alone after another sequence's cells (the attention sums group the cells differently and the
8-bit quantized activations amplify it); per-sequence streams without flash attention still differed by up to
0.64 for half the rows; per-sequence streams with flash attention (masked cells skipped): 0.0 for every row,
and answers equal token for token. The price: ``slots`` x ``n_ctx`` cells are allocated (SmolLM2-135M,
16 x 4096 cells: about 1.5 GB).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serving.engine import GenerationRequest
from tuneforge.serving.sampling import TextTracker

log = logging.getLogger("tuneforge.serving")
# Prompt tokens llama.cpp computes at once (n_ubatch). Cold prefill of a 100-token prompt, SmolLM2-135M Q8_0,
# best of 6 on the shared 2-core machine while others trained: 197 ms with n_ubatch 512, 199 ms with 128 (no
# gain), 231 ms without flash attention, 364 ms with one prompt thread instead of two (so prompts get as many
# threads as decode steps).
UBATCH = 512


@dataclass
class Slot:
    """One llama.cpp sequence (``seq_id``) of the context and the request it serves.

    Attributes:
        seq_id: llama.cpp's sequence id.
        request: The request generating now (``None``: idle).
        cached: Tokens whose keys and values the slot holds (token ``i`` at position ``i``).
        adapter: The adapter those cells were computed with.
        pending: Tokens to feed at the slot's next step (the prompt's uncached rest, or the last token chosen).
        tracker: The request's answer so far.
        generator: The request's sampler (``None``: greedy).
        waiting_step: The engine's step count when the slot last got a step (the scheduler serves the oldest first).
        used_at: When the slot last served a request.
    """

    seq_id: int
    request: GenerationRequest | None = None
    cached: list[int] = field(default_factory=list)
    adapter: Path | None = None
    pending: list[int] = field(default_factory=list)
    tracker: TextTracker | None = None
    generator: Any = None
    waiting_step: int = 0
    used_at: float = 0.0

    def reuse(self, request: GenerationRequest) -> int:
        """How many prompt tokens of ``request`` this slot already holds (one is always computed again: its
        logits choose the first token)."""
        return common_prefix(self.cached, request.prompt_ids[:-1]) if self.adapter == request.adapter else 0


def common_prefix(first: list[int], second: list[int]) -> int:
    """How many leading tokens ``first`` and ``second`` share."""
    common = 0
    for a, b in zip(first, second):
        if a != b:
            break
        common += 1
    return common


class BatchContext:
    """A llama.cpp context decoding several sequences per step.

    Args:
        model: A ``llama_model_p`` (kept alive by the caller).
        slots: Most sequences at once (``n_seq_max``).
        n_ctx: KV cells of each sequence (its own stream).
        threads: Threads of single-token steps; ``threads_batch`` those of steps with a prompt.
        threads_batch: See ``threads``.
    """

    def __init__(self, model: Any, *, slots: int, n_ctx: int, threads: int, threads_batch: int) -> None:
        from llama_cpp import llama_cpp

        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = n_ctx * slots, n_ctx, min(UBATCH, n_ctx)
        params.n_seq_max, params.kv_unified = slots, False  # a stream per sequence: see the module docstring
        params.n_threads, params.n_threads_batch = threads, threads_batch
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise TuneforgeError("llama.cpp could not create a context", hint="lower --max-batch or free memory")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_ctx, self.n_batch = llama_cpp.llama_n_ctx_seq(self.ctx), llama_cpp.llama_n_batch(self.ctx)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.slots = [Slot(seq) for seq in range(slots)]
        self.copies = 0  # prompt prefixes copied from another slot

    def decode(self, entries: list[tuple[int, list[int], int, bool]]) -> Any:
        """Decode ``(seq_id, tokens, first position, want logits)`` entries in one batch (``n_batch`` tokens at
        most).

        Returns:
            ``[entries wanting logits, vocab]`` float32 logits of their last token (a numpy array).
        """
        import numpy as np
        from llama_cpp import llama_cpp

        batch, n = self.batch, 0
        outputs = []
        for seq_id, tokens, start, wanted in entries:
            for offset, token in enumerate(tokens):
                batch.token[n], batch.pos[n] = token, start + offset
                batch.n_seq_id[n], batch.seq_id[n][0] = 1, seq_id
                batch.logits[n] = int(wanted and offset == len(tokens) - 1)
                n += 1
            if wanted:
                outputs.append(n - 1)
        batch.n_tokens = n
        failed = llama_cpp.llama_decode(self.ctx, batch)
        if failed:
            raise TuneforgeError(f"llama.cpp could not decode a batch of {n} tokens (llama_decode returned {failed})",
                                 hint="the KV cache may be full: lower max_tokens")
        rows = np.empty((len(outputs), self.n_vocab), dtype=np.float32)
        for row, index in enumerate(outputs):
            pointer = llama_cpp.llama_get_logits_ith(self.ctx, index)
            rows[row] = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)),
                                              shape=(self.n_vocab,))
        return rows

    def drop(self, slot: Slot, *, keep: int = 0) -> None:
        """Free ``slot``'s cells from position ``keep`` on."""
        from llama_cpp import llama_cpp

        if len(slot.cached) > keep:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq_id, keep, -1)
        del slot.cached[keep:]

    def copy(self, source: Slot, target: Slot) -> None:
        """Give ``target`` a copy of ``source``'s cells (they replace its own).

        Only the sequence's cells are copied (``llama_state_seq_get_data`` / ``set_data``: 2.6 MB for a 115-token
        prompt of SmolLM2-135M, 1.9 ms), not its whole KV stream as ``llama_memory_seq_cp`` does between streams
        (94 MB at 4096 cells, 13 ms: the 15 copies of a burst of 16 requests took 195 ms of a 960-ms round).
        ``llama_memory_seq_cp`` remains the fallback when the cells do not fit.
        """
        from llama_cpp import llama_cpp

        size = llama_cpp.llama_state_seq_get_size(self.ctx, source.seq_id)
        cells = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self.ctx, cells, size, source.seq_id)
        llama_cpp.llama_memory_seq_rm(self.memory, target.seq_id, -1, -1)
        if not written or llama_cpp.llama_state_seq_set_data(self.ctx, cells, written, target.seq_id) != written:
            llama_cpp.llama_memory_seq_rm(self.memory, target.seq_id, -1, -1)
            llama_cpp.llama_memory_seq_cp(self.memory, source.seq_id, target.seq_id, -1, -1)
        target.cached = list(source.cached)
        self.copies += 1

    def close(self) -> None:
        """Free the batch and the context (the model is the caller's)."""
        from llama_cpp import llama_cpp

        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


def load_model(path: Path) -> Any:
    """A ``llama_model_p`` of the GGUF file ``path`` on the CPU (free it with ``llama_model_free``)."""
    from llama_cpp import llama_cpp

    route_llama_log()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise TuneforgeError(f"llama.cpp could not load {path}", hint="check that the file is a GGUF model")
    return model


# ggml's log levels (ggml.h): DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous message).
LOG_ERROR, LOG_CONT = 4, 5


@functools.cache
def route_llama_log() -> Any:
    """Send llama.cpp's errors to the ``tuneforge.serving`` logger and drop the rest (once per process).

    llama-cpp-python 0.3.36's own callback reads the levels of an older ggml (its WARN is ggml's ERROR), so
    ``set_verbose(False)`` printed every warning to stderr: with the AMX build, one line per LoRA tensor at each
    adapter load ("cannot use buft 'AMX', fallback to CPU", 90 for a rank-8 adapter on q/v/o of SmolLM2-135M).

    Returns:
        The ctypes callback (kept alive by the cache: llama.cpp holds only its address).
    """
    from llama_cpp import llama_cpp

    last = [0]

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: Any) -> None:
        last[0] = last[0] if level == LOG_CONT else level
        if last[0] == LOG_ERROR:
            log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback
