"""The torch engine: one base model (transformers) with its adapters (PEFT) and a generation thread that
merges queued requests into batches."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from tuneforge.errors import TuneforgeError
from tuneforge.serving.adapters import AdapterCache
from tuneforge.serving.config import ServingConfig
from tuneforge.serving.decode import generate_batch
from tuneforge.serving.engine import Delta, Engine, GenerationRequest, Stream
from tuneforge.serving.stats import ServingStats

log = logging.getLogger("tuneforge.serving")


class TorchEngine(Engine):
    """A base model served with transformers + PEFT, on CPU or one GPU.

    Args:
        base: The base model's directory.
        config: Batch size, wait window and adapter cache size.
        stats: Where batch sizes are counted.
    """

    def __init__(self, base: Path, *, config: ServingConfig, stats: ServingStats | None = None) -> None:
        from tuneforge.evaluation.generation import stop_ids
        from tuneforge.models.loading import load_causal_lm, load_tokenizer

        self.base, self.config, self.stats = base, config, stats or ServingStats()
        self._tokenizer = load_tokenizer(base, padding_side="left")
        model = load_causal_lm(base).eval()
        self.end_ids = set(stop_ids(model, self._tokenizer))
        self._context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.cache = AdapterCache(model, capacity=config.adapter_cache)
        self.queue: queue.SimpleQueue[GenerationRequest | None] = queue.SimpleQueue()
        self.deferred: list[GenerationRequest] = []  # taken from the queue, left for a later batch
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tuneforge-engine-{base.name}", daemon=True)
        self.thread.start()

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return self._context

    def submit(self, request: GenerationRequest) -> Stream:
        if self.closed.is_set():
            raise TuneforgeError("the engine is shut down", hint="restart the server")
        self.queue.put(request)
        return request.stream

    def loaded_adapters(self) -> list[str]:
        return self.cache.loaded()

    def close(self) -> None:
        self.closed.set()
        self.queue.put(None)
        self.thread.join(timeout=60)

    # --- the generation thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed.is_set():
            batch = self._next_batch()
            if batch:
                self._generate(batch)
        for request in self._drain():
            request.stream.put(Delta("", 0, "error", TuneforgeError("the server is shutting down")))

    def _generate(self, batch: list[GenerationRequest]) -> None:
        batch = self._load_adapters(batch)
        if not batch:
            return
        self.stats.batch(len(batch))
        try:
            names = self.cache.adapter_names([r.adapter for r in batch])
            generate_batch(self.cache.model, self._tokenizer, batch, adapter_names=names, end_ids=self.end_ids)
        except Exception as exc:  # a bug or out of memory: end the batch's requests, keep serving
            log.exception("generation failed")
            for request in batch:
                request.stream.put(Delta("", 0, "error", exc))

    def _load_adapters(self, batch: list[GenerationRequest]) -> list[GenerationRequest]:
        """Load the batch's adapters; requests whose adapter fails to load end with that error."""
        ready = []
        for request in batch:
            try:
                if request.adapter is not None:
                    self.cache.ensure({request.adapter})
                ready.append(request)
            except Exception as exc:
                request.stream.put(Delta("", 0, "error", exc))
        return ready

    def _next_batch(self) -> list[GenerationRequest]:
        """Requests waiting now (up to max_batch); if fewer, wait up to the window for more.

        A batch holds at most ``adapter_cache`` distinct adapters (so loading one never evicts another
        that the batch uses); requests beyond that wait for the next batch, first in line.
        """
        batch: list[GenerationRequest] = []
        adapters: set[Path] = set()
        pending, self.deferred = self.deferred, []
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        while len(batch) < self.config.max_batch:
            if pending:
                request: GenerationRequest | None = pending.pop(0)
            else:
                wait = max(0.0, deadline - time.monotonic()) if batch else 0.2
                try:
                    request = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if request is None:
                    break
                if not batch:  # the window starts when the first request arrives
                    deadline = time.monotonic() + self.config.batch_wait_ms / 1000
            if request.adapter is not None and request.adapter not in adapters:
                if len(adapters) >= self.config.adapter_cache:
                    self.deferred.append(request)
                    continue
                adapters.add(request.adapter)
            batch.append(request)
        self.deferred = self.deferred + pending
        return batch

    def _drain(self) -> list[GenerationRequest]:
        left = list(self.deferred)
        while True:
            try:
                request = self.queue.get_nowait()
            except queue.Empty:
                return left
            if request is not None:
                left.append(request)
