"""The llama.cpp engine: one GGUF base model in llama.cpp, LoRA adapters applied at run time, continuous batching.

The base model folder is written once as a quantized GGUF (``ServingConfig.gguf_quantization``, Q8_0 by
default) and every adapter folder as a full-precision GGUF LoRA adapter (llama.cpp's layout, see
:mod:`tuneforge.compression.export.gguf_lora`): llama.cpp adds the adapter's update at run time, many per
base, instead of the adapter being merged and re-quantized. A ``.gguf`` base or adapter file is used as is.

Requests run as llama.cpp sequences of one context (:mod:`tuneforge.serving.llamacpp_batch`): they join
between decode steps (their prompt shares the step with the others' next tokens) and leave as they finish.
With tuneforge's llama.cpp build, the loaded adapters are stacked into one per-sequence adapter and a step
decodes the sequences of every adapter (:mod:`tuneforge.serving.llamacpp_adapters`). Without it, llama.cpp
applies adapters per context, so a step decodes the sequences of one adapter; an adapter keeps the context
while it has sequences, until another sequence has waited ``ADAPTER_SLICE_STEPS`` steps (one adapter's
sequences run to their end before the next adapter's, which is what keeps the median latency low). Tokens are
chosen here from each sequence's logits
(:mod:`tuneforge.serving.sampling`, as in the torch engine): greedy is the argmax.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from tuneforge.errors import TuneforgeError
from tuneforge.serving.config import ServingConfig
from tuneforge.serving.engine import Delta, GenerationRequest, QueuedEngine
from tuneforge.serving.llamacpp_adapters import GgufAdapters, SequenceAdapters, sequence_lora_available
from tuneforge.serving.llamacpp_batch import BatchContext, Slot, common_prefix, load_model
from tuneforge.serving.llamacpp_memory import check_context_memory, shape_from_config, shape_from_gguf, shape_from_model
from tuneforge.serving.sampling import TextTracker, make_generator, next_tokens
from tuneforge.serving.stats import ServingStats

log = logging.getLogger("tuneforge.serving")
MAX_CONTEXT = 4096  # KV cells of each sequence (the model's own context when shorter); max_batch streams of them
WORKDIR_PREFIX = "tuneforge-llamacpp-"
LOCK_NAME = ".owner.lock"
# A prompt prefix held by another slot is copied (its cells) rather than computed when it is at least this long: a
# cold prefill costs about 1 ms a token (SmolLM2-135M Q8_0, 2 threads, AMX), a copy of 115 tokens' cells 1.9 ms.
COPY_MIN_TOKENS = 16
# Changing the context's adapter makes llama.cpp reserve its compute graphs again: 3.6 ms more per single-token
# step with SmolLM2-135M (16.8 vs 13.2 ms, quiet machine), more on a busy one. Each step decodes one adapter's
# sequences; the applied adapter's keep the context until another sequence has waited this many steps. Counted
# in steps, not seconds: a 2-s slice, on a busy machine (0.5-0.8 s a step), switched adapters every few steps,
# so 16 requests over 4 adapters all ended together (p50 = max) instead of one adapter's after another's.
ADAPTER_SLICE_STEPS = 64


class LlamaCppEngine(QueuedEngine):
    """A base model served by llama.cpp, its requests batched as sequences of one context.

    Args:
        base: The base model's folder (converted to GGUF once), or a ``.gguf`` file.
        config: Most sequences at once (``max_batch``), adapter cache size, threads, the base's GGUF quantization.
        stats: Where batch sizes are counted (sequences generating, each time some join).
    """

    def __init__(self, base: Path, *, config: ServingConfig, stats: ServingStats | None = None) -> None:
        self.base, self.config, self.stats = base, config, stats or ServingStats()
        self.workdir, self._owner = claim_workdir()  # converted files, removed on close (or by the next engine)
        self.model: Any = None
        try:
            model_file, self._tokenizer, self.end_ids, model_config = _prepare_base(base, self.workdir, config)
            self._context = context_cells(getattr(model_config, "max_position_embeddings", 0))
            threads = config.threads or max((os.cpu_count() or 2) // 2, 1)  # llama-cpp-python's defaults
            self.model = load_model(model_file)  # weights mapped; the context (KV cache) only if it fits:
            check_context_memory(shape_from_model(self.model, path=model_file), slots=config.max_batch,
                                 n_ctx=self._context)
            self.batch = BatchContext(self.model, slots=config.max_batch, n_ctx=self._context, threads=threads,
                                      threads_batch=config.threads or (os.cpu_count() or 1))
        except BaseException:
            self._free_model()
            release_workdir(self.workdir, self._owner)
            raise
        self.encode_lock = threading.Lock()  # request threads encode with _tokenizer, the engine decodes with a copy
        self.decoder = copy.deepcopy(self._tokenizer)
        adapters = SequenceAdapters if sequence_lora_available() else GgufAdapters
        self.adapters: GgufAdapters | SequenceAdapters = adapters(
            self.model, self.batch.ctx, model_config, capacity=config.adapter_cache, workdir=self.workdir)
        self.deferred: list[GenerationRequest] = []  # taken from the queue, waiting for a slot or adapter room
        self.steps = 0  # llama_decode calls so far (the adapter slice is counted in them)
        self._start_thread(f"tuneforge-llamacpp-{base.name}")

    def loaded_adapters(self) -> list[str]:
        return self.adapters.loaded()

    def activity(self) -> tuple[int, int]:
        return self.running, self.queue.qsize() + len(self.deferred)

    def close(self) -> None:
        self._stop_thread()
        if not self.thread.is_alive():
            self.adapters.clear()
            self.batch.close()
            self._free_model()
        release_workdir(self.workdir, self._owner)

    def _free_model(self) -> None:
        if self.model:
            from llama_cpp import llama_cpp

            llama_cpp.llama_model_free(self.model)
            self.model = None

    # --- the generation thread -----------------------------------------------------------------
    def _active(self) -> list[Slot]:
        return [slot for slot in self.batch.slots if slot.request is not None]

    def _run(self) -> None:
        while not self.closed.is_set():
            self._admit(block=not self._active())
            group = self._next_group()
            self.running = len(self._active())
            if group and not self.closed.is_set():
                self._step(group)
        self.running = 0
        error = TuneforgeError("the server is shutting down")
        for slot in self._active():
            slot.request.stream.put(Delta("", 0, "error", error))  # type: ignore[union-attr]
        for request in self._drain():
            request.stream.put(Delta("", 0, "error", error))

    def _admit(self, *, block: bool) -> None:
        """Give waiting requests a slot (up to ``max_batch`` sequences). ``block``: nothing runs, so wait for a
        first request (0.2 s at most) and up to the batch window for others to prefill with it."""
        pending, self.deferred = self.deferred, []
        deadline, placed = None, 0
        while True:
            if pending:
                request: GenerationRequest | None = pending.pop(0)
            else:
                wait = 0.0 if not block else 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
                request = self._take(wait)
                if request is None:
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.config.batch_wait_ms / 1000
            if not self._place(request):
                self.deferred.append(request)
            else:
                placed += 1
        self.deferred += pending
        if placed:
            self.stats.batch(len(self._active()))  # the batch formed or grew

    def _place(self, request: GenerationRequest) -> bool:
        """Start ``request`` in a free slot (the one holding the longest prefix of its prompt); False when no slot
        or adapter room is free now (it waits, first in line)."""
        free = [slot for slot in self.batch.slots if slot.request is None]
        running = {s.request.adapter for s in self._active() if s.request.adapter is not None}  # type: ignore[union-attr]
        if not free or (request.adapter is not None and request.adapter not in running
                        and len(running) >= self.config.adapter_cache):
            return False
        slot = max(free, key=lambda s: (self._nearness(s, request.adapter), s.reuse(request), -len(s.cached)))
        keep = slot.reuse(request)
        donor = max(self.batch.slots, key=lambda s: s.reuse(request) if s is not slot else -1)
        if self._prefilling(request) >= max(keep, donor.reuse(request)) + COPY_MIN_TOKENS:
            return False  # another sequence is computing this prompt's prefix now: copy it after that step
        if donor.reuse(request) >= keep + COPY_MIN_TOKENS:  # a prefix another slot holds (a shared system prompt)
            self.batch.copy(donor, slot)
            keep = donor.reuse(request)
        try:
            if request.adapter is not None:
                self.adapters.load(request.adapter)
                self.adapters.evict(keep=running | {request.adapter})
        except Exception as exc:  # this adapter cannot load: its request fails, the others go on
            request.stream.put(Delta("", 0, "error", exc))
            return True
        self.batch.drop(slot, keep=keep)
        self.adapters.assign(slot.seq_id, request.adapter)
        slot.request, slot.adapter, slot.pending = request, request.adapter, request.prompt_ids[keep:]
        slot.tracker = TextTracker(self.decoder, request.params, self.end_ids)
        slot.generator = make_generator(request.params)
        slot.waiting_step, slot.used_at = self.steps, time.monotonic()
        return True

    def _prefilling(self, request: GenerationRequest) -> int:
        """The longest prefix of ``request``'s prompt that a running sequence of its adapter is computing now (its
        prompt not yet decoded). Requests that arrive together with one prompt prefix (a burst over one adapter, a
        shared system prompt) compute it once: the others wait that step and copy it, instead of each prefilling
        it (16 clients over 4 adapters, 115-token prompt: 12 prefills of 115 tokens became 3)."""
        best = 0
        for slot in self._active():
            if slot.adapter == request.adapter and slot.tracker is not None and not slot.tracker.ids:
                best = max(best, common_prefix(slot.request.prompt_ids[:-1], request.prompt_ids[:-1]))  # type: ignore[union-attr]
        return best

    def _nearness(self, slot: Slot, adapter: Path | None) -> int:
        """How well ``slot`` keeps the sequences of ``adapter`` in neighbouring slots (higher is better).

        With a KV stream per sequence, llama.cpp's work for a step grows with the span of the streams it
        touches: 4 sequences in slots 0, 4, 8, 12 took 56 ms a step, in neighbouring slots 24.5 ms
        (SmolLM2-135M; 16 sequences: 61 ms), which made 4 adapters x 4 clients take 9.3 s instead of 5.1 s. A
        sequence goes next to its adapter's others, a new adapter as far as possible from the running ones; with
        per-sequence adapters every step decodes all of them, so a sequence goes next to any running one.
        """
        if self.adapters.per_sequence:
            return -min((abs(slot.seq_id - s.seq_id) for s in self._active()), default=0)
        mine = [s.seq_id for s in self._active() if s.adapter == adapter]
        if mine:
            return -min(abs(slot.seq_id - seq) for seq in mine)
        return min((abs(slot.seq_id - s.seq_id) for s in self._active()), default=0)

    def _next_group(self) -> list[Slot]:
        """The running sequences to decode next (cancelled ones leave first): all of them with per-sequence
        adapters; else one adapter's: the applied adapter's while it has any and no other sequence has waited
        ``ADAPTER_SLICE_STEPS`` steps, else the adapter of the longest waiting one."""
        for slot in self._active():
            if slot.request.stream.cancelled:  # type: ignore[union-attr]
                self._release(slot)
        active = self._active()
        if not active or self.adapters.per_sequence:
            return active
        current = [slot for slot in active if slot.adapter == self.adapters.active]
        oldest = min(active, key=lambda s: s.waiting_step)
        if current and self.steps - oldest.waiting_step < ADAPTER_SLICE_STEPS:
            return current
        return [slot for slot in active if slot.adapter == oldest.adapter]

    def _step(self, group: list[Slot]) -> None:
        """One ``llama_decode`` of the group's pending tokens (next tokens first, then prompts up to ``n_batch``
        tokens: a longer prompt goes on at the next step), then the next token of each sequence that is ready."""
        chunks: dict[int, list[int]] = {}
        room = self.batch.n_batch
        for slot in sorted(group, key=lambda s: len(s.pending)):
            chunks[slot.seq_id] = slot.pending[:room]
            room -= len(chunks[slot.seq_id])
        group = [slot for slot in group if chunks[slot.seq_id]]
        ready = [slot for slot in group if len(chunks[slot.seq_id]) == len(slot.pending)]
        try:
            self.adapters.use(group[0].adapter)
            logits = self.batch.decode([(s.seq_id, chunks[s.seq_id], len(s.cached), s in ready) for s in group])
        except Exception as exc:  # a llama.cpp failure: these requests fail, the others go on
            log.exception("llama.cpp decode failed")
            for slot in group:
                slot.request.stream.put(Delta("", 0, "error", exc))  # type: ignore[union-attr]
                self.batch.drop(slot)
                self._release(slot)
            return
        self.steps += 1
        for slot in group:
            slot.cached += chunks[slot.seq_id]
            slot.pending, slot.waiting_step = slot.pending[len(chunks[slot.seq_id]):], self.steps
        for slot, token in zip(ready, choose_tokens(logits, ready)):
            text = slot.tracker.add(token)  # type: ignore[union-attr]
            slot.request.stream.put(Delta(text, len(slot.tracker.ids), slot.tracker.finish_reason))  # type: ignore[union-attr]
            slot.pending = [token]
            if slot.tracker.finish_reason is not None:  # type: ignore[union-attr]
                self._release(slot)

    def _release(self, slot: Slot) -> None:
        """The slot goes idle; its cells stay as a prefix cache."""
        slot.request = slot.tracker = slot.generator = None
        slot.pending, slot.used_at = [], time.monotonic()

    def _drain(self) -> list[GenerationRequest]:
        left, self.deferred = self.deferred, []
        while True:
            try:
                request = self.queue.get_nowait()
            except queue.Empty:
                return left
            if request is not None:
                left.append(request)


def choose_tokens(logits: Any, slots: list[Slot]) -> list[int]:
    """The next token of each slot from its row of ``logits`` (numpy ``[slots, vocab]``).

    Greedy rows take numpy's argmax (the first maximum, as torch's) on this thread: over [16, 49152] logits it
    took 0.12 ms of CPU a step, torch's (2 intra-op threads, whose OpenMP workers spin after the op on the cores
    llama.cpp's threads need) 3-4 ms, on the shared 2-core machine. Sampled rows go through
    :func:`~tuneforge.serving.sampling.next_tokens` with their generators.
    """
    chosen = logits.argmax(axis=1).tolist()
    sampled = [row for row, slot in enumerate(slots) if not slot.request.params.greedy]  # type: ignore[union-attr]
    if sampled:
        import torch

        picked = next_tokens(torch.from_numpy(logits[sampled]), [slots[row].request.params for row in sampled],  # type: ignore[union-attr]
                             [slots[row].generator for row in sampled])
        for row, token in zip(sampled, picked.tolist()):
            chosen[row] = token
    return chosen


def context_cells(max_positions: int | None) -> int:
    """KV cells of each sequence: the model's context (2048 when unknown), at most ``MAX_CONTEXT``."""
    return min(int(max_positions or 2048), MAX_CONTEXT)


def check_memory(base: Path, *, config: ServingConfig) -> None:
    """Refuse ``base`` when ``config.max_batch`` KV streams of its context cannot fit in memory (read from the
    ``.gguf`` file's metadata or the model folder's config, before anything is converted or allocated).

    Raises:
        TuneforgeError: The estimate (named with ``--max-batch``) is over the memory available.
    """
    if base.suffix == ".gguf":
        shape = shape_from_gguf(base)
    else:
        from transformers import AutoConfig

        shape = shape_from_config(AutoConfig.from_pretrained(base))
    check_context_memory(shape, slots=config.max_batch, n_ctx=context_cells(shape.context if shape else 0))


def _prepare_base(base: Path, workdir: Path, config: ServingConfig) -> tuple[Path, Any, set[int], Any]:
    """The GGUF file of ``base`` (written to ``workdir`` from a transformers folder), its tokenizer, end-of-turn
    ids and transformers config."""
    from tuneforge.evaluation.generation import stop_ids
    from tuneforge.models.loading import load_causal_lm, load_tokenizer

    if base.suffix == ".gguf":  # a GGUF export: the tokenizer saved beside it (adapter: separate), else the file's
        from transformers import AutoConfig, AutoTokenizer

        folder = base.parent
        tokenizer = (load_tokenizer(folder) if (folder / "tokenizer_config.json").is_file()
                     else AutoTokenizer.from_pretrained(folder, gguf_file=base.name))
        return base, tokenizer, set(stop_ids(None, tokenizer)), AutoConfig.from_pretrained(folder, gguf_file=base.name)
    from tuneforge.compression.export.gguf_writer import write_gguf

    tokenizer = load_tokenizer(base)
    model = load_causal_lm(base).eval()
    path = workdir / f"model.{config.gguf_quantization}.gguf"
    logging.getLogger("gguf").setLevel(logging.WARNING)
    write_gguf(model, tokenizer, base, path, quantization=config.gguf_quantization)
    ends = set(stop_ids(model, tokenizer))
    return path, tokenizer, ends, model.config


def claim_workdir() -> tuple[Path, IO[str]]:
    """A new ``tuneforge-llamacpp-*`` temp folder, locked (``fcntl.flock``) while this process lives; folders of
    engines whose process is gone (their lock can be taken, e.g. after a kill -9) are removed first."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{WORKDIR_PREFIX}*"):
        remove_orphan(folder)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    owner = open(workdir / LOCK_NAME, "w")  # noqa: SIM115 - held open for the engine's life
    fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return workdir, owner


def remove_orphan(folder: Path) -> bool:
    """Remove ``folder`` when its owner's lock can be taken (its engine is gone); True when removed. A folder
    with no lock file is left alone (an engine creating it, or an older tuneforge's)."""
    try:
        handle = open(folder / LOCK_NAME)  # noqa: SIM115
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live engine holds it
        shutil.rmtree(folder, ignore_errors=True)
        return True


def release_workdir(workdir: Path, owner: IO[str]) -> None:
    """Remove the engine's folder, then drop its lock."""
    shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        owner.close()
