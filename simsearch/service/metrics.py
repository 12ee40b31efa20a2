"""What the service counts: Prometheus metrics (its own registry per app) and the query statistics of
/stats (count, errors, abandoned, latency percentiles)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "Stats"]


class Metrics:
    """Prometheus metrics of one app (its own registry, so two apps in a process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "simsearch_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "simsearch_request_duration_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.in_flight = Gauge("simsearch_requests_in_flight", "Requests being answered", registry=self.registry)
        self.queue = Gauge(
            "simsearch_queue_depth", "Queries waiting for a decode slot or for the encoder", registry=self.registry
        )
        self.images = Gauge("simsearch_index_images", "Images in the served index", registry=self.registry)
        self.abandoned = Counter(
            "simsearch_abandoned", "Queries whose work stopped after their timeout", registry=self.registry
        )


class Stats:
    """Query count and recent latencies (the last 10,000), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.queries = 0
        self.errors = 0
        self.abandoned = 0
        self._lat: deque[float] = deque(maxlen=10_000)

    def record(self, seconds: float) -> None:
        with self._lock:
            self.queries += 1
            self._lat.append(seconds)

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def abandon(self) -> None:
        with self._lock:
            self.abandoned += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self._lat) * 1000
            queries, errors, abandoned = self.queries, self.errors, self.abandoned
        pct = {f"p{p}": round(float(np.percentile(lat, p)), 3) if len(lat) else None for p in (50, 90, 99)}
        return {
            "queries": queries,
            "errors": errors,
            "abandoned": abandoned,
            "uptime_s": round(time.time() - self.started, 1),
            "latency_ms": pct,
        }
