"""What every engine offers: submit a tokenized prompt, read its text back as a stream of deltas."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.serving.config import SamplingParams


@dataclass(frozen=True)
class Delta:
    """A piece of one sequence's answer; the last one has ``finish_reason`` (``stop`` or ``length``).

    Attributes:
        text: New text since the previous delta.
        tokens: Tokens generated so far.
        finish_reason: Set on the last delta only.
        error: An exception that ended the sequence (then ``finish_reason`` is ``error``).
    """

    text: str
    tokens: int
    finish_reason: str | None = None
    error: BaseException | None = None


class LoopMailbox:
    """Deltas on their way from an engine's thread to one asyncio loop, handed over in one loop callback per burst.

    An engine puts a delta for each of its sequences after every step (16 at once with 16 clients); each
    ``call_soon_threadsafe`` writes to the loop's wake-up socket and costs the loop an iteration. Here the first
    delta of a burst schedules one :meth:`deliver`, and the deltas put before it runs ride along, in order.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.pending: list[tuple[asyncio.Queue[Delta], Delta]] = []

    def post(self, target: asyncio.Queue[Delta], delta: Delta) -> None:
        """Queue ``delta`` for ``target`` (any thread); the loop delivers it soon."""
        with self.lock:
            self.pending.append((target, delta))
            if len(self.pending) > 1:
                return  # a delivery is scheduled and has not taken the list yet
        try:
            self.loop.call_soon_threadsafe(self.deliver)
        except RuntimeError:  # the loop is closed: nobody reads these deltas any more
            with self.lock:
                self.pending.clear()
            raise

    def deliver(self) -> None:
        """Hand every pending delta to its queue (in the loop's thread)."""
        with self.lock:
            pending, self.pending = self.pending, []
        for target, delta in pending:
            target.put_nowait(delta)


_mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox] = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


def mailbox(loop: asyncio.AbstractEventLoop) -> LoopMailbox:
    """The :class:`LoopMailbox` of ``loop`` (one per loop, made on first use, gone with the loop)."""
    with _mailboxes_lock:
        found = _mailboxes.get(loop)
        if found is None:
            found = _mailboxes[loop] = LoopMailbox(loop)
        return found


class Stream:
    """The deltas of one sequence, handed from the engine's thread to a thread or an asyncio loop.

    Args:
        loop: The asyncio loop that reads the stream (``None``: read with :meth:`__iter__`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self.sync_queue: queue.SimpleQueue[Delta] = queue.SimpleQueue()
        self.async_queue: asyncio.Queue[Delta] | None = asyncio.Queue() if loop is not None else None
        self.mailbox = mailbox(loop) if loop is not None else None
        self.first_token_at: float | None = None
        self.cancelled = False  # the reader went away: the engine stops generating this sequence

    def cancel(self) -> None:
        """Ask the engine to stop generating (a client that disconnected)."""
        self.cancelled = True

    def put(self, delta: Delta) -> None:
        """Called by the engine (any thread)."""
        if self.first_token_at is None and delta.tokens:
            self.first_token_at = time.perf_counter()
        if self.mailbox is not None and self.async_queue is not None:
            self.mailbox.post(self.async_queue, delta)
        else:
            self.sync_queue.put(delta)

    def __iter__(self) -> Iterator[Delta]:
        while True:
            delta = self.sync_queue.get()
            yield delta
            if delta.finish_reason is not None:
                return

    async def deltas(self) -> AsyncIterator[Delta]:
        """The deltas, read in the loop given at creation."""
        assert self.async_queue is not None, "create the Stream with loop= to read it asynchronously"
        while True:
            delta = await self.async_queue.get()
            yield delta
            if delta.finish_reason is not None:
                return


@dataclass
class GenerationRequest:
    """One sequence to generate.

    Attributes:
        prompt_ids: The tokenized prompt.
        params: Sampling and stopping.
        adapter: The adapter folder to apply (``None``: the base model). The cache is keyed by this folder.
        stream: Where the deltas go.
        label: The served model's name (for metrics).
    """

    prompt_ids: list[int]
    params: SamplingParams
    adapter: Path | None = None
    stream: Stream = field(default_factory=Stream)
    label: str = ""


class Engine(ABC):
    """One base model loaded for generation, with its adapters and its batching."""

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The base model's tokenizer, for its chat template (encode with :meth:`encode`)."""

    @abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        """Token ids of ``text`` (safe to call from any thread)."""

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Most tokens (prompt + answer) the model attends to."""

    @abstractmethod
    def submit(self, request: GenerationRequest) -> Stream:
        """Queue ``request``; its deltas arrive on ``request.stream``."""

    @abstractmethod
    def loaded_adapters(self) -> list[str]:
        """The adapter folders loaded now (most recently used last)."""

    @abstractmethod
    def activity(self) -> tuple[int, int]:
        """``(sequences generating now, requests waiting)``."""

    @abstractmethod
    def close(self) -> None:
        """Stop generating (requests in flight end with an error) and free the model."""


class TokenizedEngine(Engine):
    """An engine that tokenizes with a transformers tokenizer of its own: subclasses set ``_tokenizer``,
    ``encode_lock`` (a fast tokenizer is not safe to share between threads) and ``_context``."""

    _tokenizer: Any
    encode_lock: threading.Lock
    _context: int

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def encode(self, text: str, *, add_special_tokens: bool) -> list[int]:
        with self.encode_lock:
            return self._tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    @property
    def context_length(self) -> int:
        return self._context


class QueuedEngine(TokenizedEngine):
    """An engine whose one generation thread (``_run``) reads requests from ``queue`` until ``closed`` is set."""

    def _start_thread(self, name: str) -> None:
        """Create the queue and start ``_run`` in a thread called ``name``."""
        self.queue: queue.SimpleQueue[GenerationRequest | None] = queue.SimpleQueue()
        self.closed = threading.Event()
        self.running = 0  # sequences generating now
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    @abstractmethod
    def _run(self) -> None:
        """The generation thread: serve the queue until a ``None`` arrives or ``closed`` is set."""

    def submit(self, request: GenerationRequest) -> Stream:
        from tuneforge.errors import TuneforgeError

        if self.closed.is_set():
            raise TuneforgeError("the engine is shut down", hint="restart the server")
        self.queue.put(request)
        return request.stream

    def _take(self, wait: float) -> GenerationRequest | None:
        """The next queued request, waiting up to ``wait`` seconds (0: only one already queued); ``None`` when the
        queue stays empty or the stop marker arrives."""
        try:
            return self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
        except queue.Empty:
            return None

    def _stop_thread(self) -> None:
        """Ask the generation thread to stop and wait for it (a minute at most)."""
        self.closed.set()
        self.queue.put(None)
        self.thread.join(timeout=60)
