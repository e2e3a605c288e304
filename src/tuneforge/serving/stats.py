"""What the server counts for ``/metrics``: requests, latencies, tokens, batch sizes (in memory, per process)."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Histogram:
    """Counts of observations at or under each bound, their sum and number."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        """Add one observation."""
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1

    def buckets(self) -> list[tuple[str, int]]:
        """Prometheus' cumulative buckets, ``+Inf`` last."""
        counts = self.counts or [0] * len(self.bounds)
        return [(str(b), c) for b, c in zip(self.bounds, counts)] + [("+Inf", self.count)]


class ServingStats:
    """Thread-safe counters of the inference server, labelled by served model name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = defaultdict(int)  # (model, status) -> count
        self.latency: dict[str, Histogram] = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.first_token: dict[str, Histogram] = defaultdict(lambda: Histogram(LATENCY_BUCKETS))
        self.tokens: dict[str, int] = defaultdict(int)
        self.batch_sizes = Histogram(BATCH_BUCKETS)

    def request_done(self, model: str, *, status: str, seconds: float, first_token_seconds: float | None,
                     tokens: int) -> None:
        """Record one finished request."""
        with self.lock:
            self.requests[(model, status)] += 1
            self.latency[model].observe(seconds)
            if first_token_seconds is not None:
                self.first_token[model].observe(first_token_seconds)
            self.tokens[model] += tokens

    def batch(self, size: int) -> None:
        """Record one generated batch of ``size`` sequences."""
        with self.lock:
            self.batch_sizes.observe(size)
