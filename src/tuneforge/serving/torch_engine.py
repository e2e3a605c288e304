"""The torch engine: one base model (transformers) with its adapters (PEFT) and a generation thread that
merges queued requests into batches."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.serving.adapters import AdapterCache
from tuneforge.serving.config import ServingConfig
from tuneforge.serving.decode import RunningBatch
from tuneforge.serving.engine import Delta, GenerationRequest, QueuedEngine
from tuneforge.serving.stats import ServingStats

log = logging.getLogger("tuneforge.serving")


class TorchEngine(QueuedEngine):
    """A base model served with transformers + PEFT, on CPU or one GPU.

    Args:
        base: The base model's directory.
        config: Batch size, wait window and adapter cache size.
        stats: Where batch sizes are counted.
    """

    def __init__(self, base: Path, *, config: ServingConfig, stats: ServingStats | None = None) -> None:
        import torch

        from tuneforge.evaluation.generation import stop_ids
        from tuneforge.models.loading import load_causal_lm, load_tokenizer

        self.base, self.config, self.stats = base, config, stats or ServingStats()
        self._tokenizer = load_tokenizer(base, padding_side="left")
        # a fast tokenizer is not safe to share between threads ("Already borrowed"): request threads encode
        # with this one under a lock, the generation thread decodes with its own copy
        self.encode_lock = threading.Lock()
        self.decoder = load_tokenizer(base, padding_side="left")
        model = load_causal_lm(base).eval()
        if torch.cuda.is_available():  # one GPU when there is one (vLLM is the engine for more)
            model.to("cuda")
        self.end_ids = set(stop_ids(model, self._tokenizer))
        self._context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.cache = AdapterCache(model, capacity=config.adapter_cache)
        self.deferred: list[GenerationRequest] = []  # taken from the queue, left for a later batch
        self._start_thread(f"tuneforge-engine-{base.name}")

    def loaded_adapters(self) -> list[str]:
        return self.cache.loaded()

    def activity(self) -> tuple[int, int]:
        return self.running, self.queue.qsize() + len(self.deferred)

    def close(self) -> None:
        self._stop_thread()

    # --- the generation thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self.closed.is_set():
            running = RunningBatch(self.cache, self.decoder, end_ids=self.end_ids)
            self._join(running, self._next_batch(running, block=True))
            while running.rows and not self.closed.is_set():
                self.running = len(running.rows)
                self._step(running)
                if running.rows and running.can_join() and len(running.rows) < self.config.max_batch:
                    self._join(running, self._next_batch(running, block=False))  # continuous batching
            self.running = 0
            running.fail(TuneforgeError("the server is shutting down"))
        for request in self._drain():
            request.stream.put(Delta("", 0, "error", TuneforgeError("the server is shutting down")))

    def _step(self, running: RunningBatch) -> None:
        try:
            running.step()
        except Exception as exc:  # a bug or out of memory: end the batch's requests, keep serving
            log.exception("generation failed")
            running.fail(exc)

    def _join(self, running: RunningBatch, requests: list[GenerationRequest]) -> None:
        """Load the requests' adapters (between steps: no forward pass sees the model change) and prefill them."""
        ready: list[GenerationRequest] = []
        for request in requests:
            try:
                if request.adapter is not None:
                    self.cache.ensure({request.adapter}, keep=running.folders | {r.adapter for r in ready if r.adapter})
                ready.append(request)
            except Exception as exc:  # this adapter cannot load: its requests fail, the others go on
                request.stream.put(Delta("", 0, "error", exc))
        if not ready:
            return
        try:
            running.add(ready)
        except Exception as exc:
            log.exception("prefill failed")
            for request in ready:
                request.stream.put(Delta("", 0, "error", exc))
            return
        self.stats.batch(len(running.rows))

    def _next_batch(self, running: RunningBatch, *, block: bool) -> list[GenerationRequest]:
        """Requests to add to ``running`` (up to max_batch in all).

        ``block``: wait for a first request (0.2 s at most), then up to the window for more; else take only
        what waits now. A batch holds at most ``adapter_cache`` distinct adapters (so loading one never evicts
        another that runs); requests beyond that wait, first in line.
        """
        batch: list[GenerationRequest] = []
        adapters = running.folders
        pending, self.deferred = self.deferred, []
        deadline = time.monotonic() + self.config.batch_wait_ms / 1000
        while len(batch) + len(running.rows) < self.config.max_batch:
            if pending:
                request: GenerationRequest | None = pending.pop(0)
            else:
                request = self._take(0.0 if not block else max(0.0, deadline - time.monotonic()) if batch else 0.2)
                if request is None:
                    break
                if block and not batch:  # the window starts when the first request arrives
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
