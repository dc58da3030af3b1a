"""Prometheus metrics, one registry per app (tests run many apps in one process).

Counters and histograms are updated where things happen (requests, storage calls,
rate-limit rejections); live state (actors, mailboxes, subscribers, Redis) is read
when ``/metrics`` is scraped, so nothing has to keep it in step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .errors import StorageUnavailable
from .storage import Entity, Op, Page, Stored, TableStore

__all__ = ("METHODS", "InstrumentedStore", "Metrics")

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "starmap_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "starmap_http_request_duration_seconds",
            "Time to answer (for streams: the stream's life)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.rate_limited = Counter(
            "starmap_rate_limited", "Likes refused by the rate limit", registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request; the labelled children are looked up once each."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Add live values, read at each scrape."""
        self.registry.register(_LiveCollector(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


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


class InstrumentedStore:
    """A ``TableStore`` that times every operation and counts failures."""

    def __init__(self, inner: TableStore, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._latency: dict[str, Any] = {}

    @property
    def kind(self) -> str:
        return self.inner.kind

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        except StorageUnavailable as exc:
            self.metrics.storage_errors.labels(operation, type(exc).__name__).inc()
            raise
        finally:
            histogram = self._latency.get(operation)
            if histogram is None:  # labels() is costly: once per operation, not once per call
                histogram = self._latency[operation] = self.metrics.storage_latency.labels(operation)
            histogram.observe(time.perf_counter() - started)

    async def ensure_tables(self, names: Sequence[str]) -> None:
        await self._timed("ensure_tables", self.inner.ensure_tables(names))

    async def get(self, table: str, partition_key: str, row_key: str) -> Stored:
        result: Stored = await self._timed("get", self.inner.get(table, partition_key, row_key))
        return result

    async def insert(self, table: str, entity: Entity) -> str:
        result: str = await self._timed("insert", self.inner.insert(table, entity))
        return result

    async def update(self, table: str, entity: Entity, etag: str) -> str:
        result: str = await self._timed("update", self.inner.update(table, entity, etag))
        return result

    async def upsert(self, table: str, entity: Entity) -> str:
        result: str = await self._timed("upsert", self.inner.upsert(table, entity))
        return result

    async def delete(self, table: str, partition_key: str, row_key: str, etag: str | None = None) -> None:
        await self._timed("delete", self.inner.delete(table, partition_key, row_key, etag))

    async def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        limit: int = 1000,
        continuation: str | None = None,
    ) -> Page:
        page: Page = await self._timed(
            "query", self.inner.query(table, partition_key, limit=limit, continuation=continuation)
        )
        return page

    async def batch(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        result: list[str | None] = await self._timed("batch", self.inner.batch(table, ops))
        return result

    async def count(self, table: str) -> int:
        result: int = await self._timed("count", self.inner.count(table))
        return result

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()
