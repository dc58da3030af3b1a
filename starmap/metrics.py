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

from prometheus_client import CollectorRegistry, Counter, generate_latest
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
        self.storage_latency = Timings(
            "starmap_storage_operation_duration_seconds", "Table store operations", ["operation"]
        )
        self.registry.register(self.storage_latency)
        self.storage_errors = Counter(
            "starmap_storage_errors",
            "Table store operations that failed",
            ["operation", "error"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "starmap_rate_limited", "Likes refused by the rate limit", registry=self.registry
        )
        # Count and time one request: (method, route, status, seconds). The stats' own method,
        # not a method of this class calling it: every request pays one frame fewer.
        self.observe_request: Callable[[str, str, int, float], None] = self.requests.observe

    def watch(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Add live values, read at each scrape."""
        self.registry.register(_LiveCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Timings(Collector):
    """A histogram family kept in plain dicts: label values → a count per bucket (the last:
    over the largest bound) and the sum.

    Only the event loop's thread updates it: prometheus_client's labelled children take
    a lock on every update (~4 % of a small GET's CPU, and every like times a store call).
    It becomes the same histogram family when ``/metrics`` is scraped.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.times: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, label_values: tuple[str, ...], seconds: float) -> None:
        times = self.times.get(label_values)
        if times is None:
            times = self.times[label_values] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
        times[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        times[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        bounds = [*map(floatToGoString, LATENCY_BUCKETS), "+Inf"]
        for label_values, (buckets, total) in self.times.items():
            cumulative = list(zip(bounds, itertools.accumulate(buckets), strict=True))
            family.add_metric(list(label_values), cumulative, sum_value=total[0])
        return iter((family,))

    def describe(self) -> list[Metric]:
        return []  # the family is made at scrape time


class RequestStats(Collector):
    """Requests answered (``starmap_http_requests``) and their times, kept in plain dicts
    (see ``Timings``)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.times = Timings(
            "starmap_http_request_duration_seconds",
            "Time to answer (for streams: the stream's life)",
            ["method", "route"],
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.times.observe((method, route), seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "starmap_http_requests", "HTTP requests answered", labels=["method", "route", "status"]
        )
        for (method, route, status), count in self.counts.items():
            requests.add_metric([method, route, str(status)], count)
        return iter((requests, *self.times.collect()))

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
