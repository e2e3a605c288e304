"""Prometheus figures of the inference server (this process): requests, latencies, tokens, batches, adapters."""

from __future__ import annotations

from typing import Any

from tuneforge.serving.engines import ModelServer


class ServingCollector:
    """Reads :class:`~tuneforge.serving.stats.ServingStats` and the engines at scrape time."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        stats = self.server.stats
        with stats.lock:
            requests = CounterMetricFamily("tuneforge_inference_requests", "Inference requests by model and outcome",
                                           labels=["model", "status"])
            for (model, status), count in sorted(stats.requests.items()):
                requests.add_metric([model, status], count)
            tokens = CounterMetricFamily("tuneforge_inference_generated_tokens", "Tokens generated",
                                         labels=["model"])
            for model, count in sorted(stats.tokens.items()):
                tokens.add_metric([model], count)
            latency = HistogramMetricFamily("tuneforge_inference_latency_seconds", "Request start to last token",
                                            labels=["model"])
            for model, histogram in sorted(stats.latency.items()):
                latency.add_metric([model], histogram.buckets(), histogram.total)
            first = HistogramMetricFamily("tuneforge_inference_time_to_first_token_seconds",
                                          "Request start to first token", labels=["model"])
            for model, histogram in sorted(stats.first_token.items()):
                first.add_metric([model], histogram.buckets(), histogram.total)
            batches = HistogramMetricFamily("tuneforge_inference_batch_size", "Sequences generating together, each time a batch forms or grows")
            batches.add_metric([], stats.batch_sizes.buckets(), stats.batch_sizes.total)
        adapters = GaugeMetricFamily("tuneforge_inference_loaded_adapters", "Adapters loaded per base model",
                                     labels=["base_model"])
        for base, folders in sorted(self.server.loaded_adapters().items()):
            adapters.add_metric([base], len(folders))
        running, waiting = self.server.activity()
        yield GaugeMetricFamily("tuneforge_inference_running_sequences", "Sequences generating now", value=running)
        yield GaugeMetricFamily("tuneforge_inference_waiting_requests", "Sequences waiting for a batch", value=waiting)
        yield from (requests, tokens, latency, first, batches, adapters)
