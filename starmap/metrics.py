"""Prometheus metrics, one registry per app (tests run many apps in one process).

Counters and histograms are updated where things happen (requests, storage calls,
rate-limit rejections); live state (actors, mailboxes, subscribers, Redis) is read
when ``/metrics`` is scraped, so nothing has to keep it in step.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ("METHODS", "Metrics", "counter", "gauge")

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestStats()
        self.registry.register(self.requests)
        self.storage_latency = Histogram(
            "starmap_storage_operation_duration_seconds",
            "Table store operations",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "starmap_storage_errors",
            "Table store operations that failed",
            ["operation", "error"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "starmap_rate_limited", "Likes refused by the rate limit", registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request."""
        self.requests.observe(method, route, status, seconds)

    def watch(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Add live values, read at each scrape."""
        self.registry.register(_LiveCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestStats(Collector):
    """Requests answered (``starmap_http_requests``) and their times, kept in plain dicts.

    Every request updates these, and only the event loop's thread does: prometheus_client's
    labelled children take a lock on every update, ~4 % of a small GET's CPU. They become
    the same counter and histogram families when ``/metrics`` is scraped.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        # Per (method, route): a count for each bucket (the last: over the largest bound), the sum.
        self.times: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        times = self.times.get((method, route))
        if times is None:
            times = self.times[(method, route)] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        times[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        times[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "starmap_http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        for (method, route, status), count in self.counts.items():
            requests.add_metric([method, route, str(status)], count)
        latency = HistogramMetricFamily(
            "starmap_http_request_duration_seconds",
            "Time to answer (for streams: the stream's life)",
            labels=["method", "route"],
        )
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for (method, route), (buckets, total) in self.times.items():
            cumulative = list(zip(bounds, itertools.accumulate(buckets), strict=True))
            latency.add_metric([method, route], cumulative, sum_value=total[0])
        return iter((requests, latency))

    def describe(self) -> list[Metric]:
        return []  # the families are made at scrape time


class _LiveCollector(Collector):
    def __init__(self, read: Callable[[], Iterator[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        return self._read()

    def describe(self) -> list[Metric]:
        return []  # values appear only at scrape time


def gauge(
    name: str, documentation: str, labels: Sequence[str], values: dict[tuple[str, ...], float]
) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)
