"""Prometheus metrics of one server (its own registry, so several apps can live in a process)."""

from __future__ import annotations

from collections.abc import Callable

from ..batcher import BatchStats

ROUTES = ("/v1/embeddings", "/embeddings", "/embed", "/v1/models", "/health", "/metrics")
_POWERS = tuple(float(2**i) for i in range(11))  # 1 .. 1024


class Metrics:
    """Requests and errors by route and code, latency, queue depth, batch sizes."""

    def __init__(self, queue_depth: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("llm2vec_rag_requests", "HTTP requests by route and status code",
                                ["route", "code"], registry=r)
        self.errors = Counter("llm2vec_rag_errors", "HTTP error answers (>= 400) by route and "
                              "status code", ["route", "code"], registry=r)
        self.latency = Histogram("llm2vec_rag_request_seconds", "HTTP request latency",
                                 ["route"], registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.queue = Gauge("llm2vec_rag_queue_depth", "requests waiting for the model worker",
                           registry=r)
        self.queue.set_function(queue_depth)
        self.batch_requests = Histogram("llm2vec_rag_batch_requests",
                                        "requests merged into one encode call", registry=r,
                                        buckets=_POWERS[:9])
        self.batch_texts = Histogram("llm2vec_rag_batch_texts", "texts per encode call",
                                     registry=r, buckets=_POWERS)
        self.batch_tokens = Histogram("llm2vec_rag_batch_tokens",
                                      "real tokens per encode call", registry=r,
                                      buckets=tuple(16.0 * 2**i for i in range(13)))
        self.batch_seconds = Histogram("llm2vec_rag_batch_seconds", "encode call duration",
                                       registry=r)
        self.texts = Counter("llm2vec_rag_texts", "texts embedded", registry=r)
        self.tokens = Counter("llm2vec_rag_tokens", "tokens embedded", registry=r)

    def observe_request(self, path: str, code: int, seconds: float, error: bool = True) -> None:
        """Count one answer; ``error=False`` keeps an expected >= 400 answer (``/health``'s
        503 while the model loads) out of the error counter."""
        route = path if path in ROUTES else "other"  # bounded label values
        self.requests.labels(route, str(code)).inc()
        if code >= 400 and error:
            self.errors.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.requests)
        self.batch_texts.observe(stats.texts)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)
        self.texts.inc(stats.texts)
        self.tokens.inc(stats.tokens)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
