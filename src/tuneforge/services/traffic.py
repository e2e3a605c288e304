"""Served traffic: the request log (written off the request path), feedback on responses, and datasets
collected from logged requests (``tuneforge data collect --from-traffic``).

The inference server hands each finished request to :class:`RequestLog`, a queue that one writer thread
empties into the Store in batches: a request never waits on the database, a refused write is retried, and
a shutdown writes what is queued. The prompt and the answer are kept only when the server runs with
``--log-requests``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
from typing import Any

from tuneforge.errors import ConfigError, DataError, NotFoundError
from tuneforge.registry.models import parse_ref
from tuneforge.services.datasets import extend_data
from tuneforge.services.platform import Platform
from tuneforge.storage.base import Store
from tuneforge.storage.records import FeedbackRecord, ServedRequestRecord

log = logging.getLogger(__name__)
LABELS = {"up": 1.0, "thumbs_up": 1.0, "+1": 1.0, "down": 0.0, "thumbs_down": 0.0, "-1": 0.0}
_STOP = object()


class RequestLog:
    """A queue of finished requests and the thread that writes them to the Store.

    The thread writes whatever is queued (up to ``batch`` requests, one transaction) as soon as a request
    arrives, so an answered request is in the database a few milliseconds later; the server's shutdown (SIGTERM,
    Ctrl-C) calls :meth:`close`, which writes everything queued first. A kill -9 loses at most the requests of the
    write in flight and those queued behind it (normally the last few milliseconds of traffic). A write the
    database refuses (down, locked, restarting) is kept and retried, in order, after ``retry_seconds`` (doubling
    up to 5 s) for ``give_up_seconds``; only then, or past ``max_pending`` waiting requests, are requests dropped,
    each drop logged with its count.

    Args:
        store: Where the log goes.
        keep_text: Keep prompts and answers (``--log-requests``); otherwise only the figures are logged.
        batch: Most requests written in one transaction.
        retry_seconds: First wait before a refused write is tried again.
        give_up_seconds: How long a refused batch is retried before it is dropped.
        max_pending: Most requests held while the database refuses writes (the oldest are dropped beyond it).
    """

    def __init__(self, store: Store, *, keep_text: bool = False, batch: int = 256, retry_seconds: float = 0.2,
                 give_up_seconds: float = 300.0, max_pending: int = 100_000) -> None:
        self.store, self.keep_text, self.batch = store, keep_text, batch
        self.retry_seconds, self.give_up_seconds, self.max_pending = retry_seconds, give_up_seconds, max_pending
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tuneforge-request-log", daemon=True)
        self._thread.start()

    def __call__(self, record: ServedRequestRecord) -> None:
        """Queue a finished request (returns at once)."""
        if not self.keep_text:
            record = dataclasses.replace(record, prompt=None, answer=None)
        self._queue.put(record)

    def flush(self) -> None:
        """Wait until every queued request is written (feedback on a just-answered request looks here first)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the thread (a refused write is retried once more, not for minutes)."""
        self._closing.set()
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < self.batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            records = [r for r in items if r is not _STOP]
            try:
                self._write(records)
            finally:
                for _ in items:
                    self._queue.task_done()
            if len(records) < len(items):
                return

    def _write(self, records: list[ServedRequestRecord]) -> None:
        """Write one batch; while the database refuses it, wait and try again (see the class's docstring)."""
        wait, waited = self.retry_seconds, 0.0
        while records:
            try:
                self.store.add_served_requests(records)
                return
            except Exception as exc:  # noqa: BLE001 - the log must not stop serving; the server's log says why
                pending = self._queue.qsize() + len(records)
                if self._closing.is_set() or waited >= self.give_up_seconds or pending > self.max_pending:
                    log.error("dropped %d served requests from the request log: %s", len(records), exc)
                    return
                log.warning("could not log %d served requests (%s): retrying in %.1f s", len(records), exc, wait)
            self._closing.wait(wait)
            waited, wait = waited + wait, min(wait * 2, 5.0)


def parse_score(score: str | float | int | bool) -> tuple[float, str | None]:
    """A feedback score: ``up`` / ``down`` (also ``thumbs_up``, ``+1``, true/false) -> 1.0 / 0.0, or a number.

    Raises:
        ConfigError: Neither a thumb nor a number.
    """
    if isinstance(score, bool):
        return (1.0, "up") if score else (0.0, "down")
    text = str(score).strip().lower()
    if text in LABELS:
        return LABELS[text], "up" if LABELS[text] else "down"
    try:
        value = float(score if isinstance(score, (int, float)) else text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # 'nan' and 'inf' parse as floats, and would poison every mean of the report
        raise ConfigError(f"score {str(score)[:100]!r} is neither up/down nor a finite number", field="score",
                          hint="send 'up', 'down' or a number such as 4 or 0.8")
    return value, None


def record_feedback(platform: Platform, response_id: str, *, project: str, score: str | float | int | bool,
                    correction: str | None = None, log_queue: RequestLog | None = None) -> FeedbackRecord:
    """Record a score (and optionally a corrected answer) for a response this server returned.

    Raises:
        ConfigError: A score that is neither a thumb nor a number.
        NotFoundError: No such response in this project (404).
    """
    value, label = parse_score(score)
    record = FeedbackRecord(request_id=response_id, project=project, score=value, label=label,
                            correction=correction or None)
    try:
        return platform.store.add_feedback(record)
    except NotFoundError:
        if log_queue is None:
            raise
        log_queue.flush()  # the request may still sit in the writer's queue
        return platform.store.add_feedback(record)


def latest_feedback(feedback: list[FeedbackRecord]) -> dict[str, FeedbackRecord]:
    """The newest feedback of each response (a user may change their mind)."""
    return {f.request_id: f for f in feedback}


def traffic_records(requests: list[ServedRequestRecord], feedback: dict[str, FeedbackRecord], *,
                    include_liked: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training records from logged chat requests that kept their text: a corrected answer gives a chat record
    ending in the correction and a preference pair (chosen = the correction, rejected = the answer); with
    ``include_liked``, a thumbs-up answer gives a chat record ending in that answer.

    Returns:
        The chat (``messages``) records and the preference (``prompt``/``chosen``/``rejected``) records.
    """
    chats, pairs = [], []
    for request in requests:
        messages = (request.prompt or {}).get("messages") if isinstance(request.prompt, dict) else None
        note = feedback.get(request.id)
        if not messages or request.answer is None or note is None:
            continue
        if note.correction:
            chats.append({"messages": [*messages, {"role": "assistant", "content": note.correction}]})
            if note.correction.strip() != request.answer.strip():
                pairs.append({"prompt": messages, "chosen": note.correction, "rejected": request.answer})
        elif include_liked and note.label == "up":
            chats.append({"messages": [*messages, {"role": "assistant", "content": request.answer}]})
    return chats, pairs


def collect_from_traffic(platform: Platform, name: str, *, project: str, model: str, since: float | None = None,
                         include_liked: bool = False, pairs_name: str | None = None) -> dict[str, Any]:
    """New versions of data set ``name`` (chat records) and ``pairs_name`` (default ``NAME-pairs``, preference
    pairs) from the logged requests of ``model`` (``bot``: every version and alias of a registered model;
    ``bot@production``, ``bot:8``; or a served name) that got a correction (or, with ``include_liked``, a thumbs up).

    Returns:
        ``{"chat": DataOutcome | None, "pairs": DataOutcome | None, "requests": n, "with_text": n}``.

    Raises:
        DataError: No logged request with text gives a record (was the server run with --log-requests?).
    """
    requests = _requests_of(platform.store, model, project=project, since=since)
    notes = latest_feedback(platform.store.list_feedback(project=project, since=since))
    chats, pairs = traffic_records(requests, notes, include_liked=include_liked)
    with_text = sum(r.answer is not None for r in requests)
    if not chats:
        raise DataError(f"none of the {len(requests)} logged requests of '{model}' ({with_text} with their text) has "
                        "a correction" + (" or a thumbs up" if include_liked else ""),
                        hint="run the server with --log-requests, and send feedback with corrections "
                        "(POST /v1/feedback, 'tuneforge feedback')")
    params = {"from_traffic": model, "since": since, "include_liked": include_liked}
    chat = extend_data(platform, name, chats, fmt="messages", project=project, operation="collect", params=params,
                       create=True)
    paired = extend_data(platform, pairs_name or f"{name}-pairs", pairs, fmt="preference", project=project,
                         operation="collect", params=params, create=True) if pairs else None
    return {"chat": chat, "pairs": paired, "requests": len(requests), "with_text": with_text}


def _requests_of(store: Store, model: str, *, project: str, since: float | None) -> list[ServedRequestRecord]:
    ref = parse_ref(model)
    if ref is None or not any(m.name == ref.name for m in store.list_registered_models(project=project)):
        return store.list_served_requests(project=project, model=model, since=since)
    found = store.list_served_requests(project=project, name=ref.name, alias=ref.alias, since=since)
    return [r for r in found if ref.version is None or r.version == ref.version]
