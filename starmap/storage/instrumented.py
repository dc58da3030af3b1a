"""A table store that times every operation and counts its failures (for /metrics)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..errors import StorageUnavailable
from ..metrics import Metrics
from .base import DEFAULT_PAGE, Entity, Op, Page, RowRange, Stored, TableStore

__all__ = ("InstrumentedStore",)


class InstrumentedStore:
    """A ``TableStore`` that times every operation and counts failures."""

    def __init__(self, inner: TableStore, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def write_requests(self) -> int:
        return self.inner.write_requests

    async def _timed(self, operation: str, call: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call
        except StorageUnavailable as exc:
            self.metrics.storage_errors.labels(operation, type(exc).__name__).inc()
            raise
        finally:
            self.metrics.storage_latency.observe((operation,), time.perf_counter() - started)

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
        limit: int = DEFAULT_PAGE,
        continuation: str | None = None,
        rows: RowRange | None = None,
    ) -> Page:
        page: Page = await self._timed(
            "query", self.inner.query(table, partition_key, limit=limit, continuation=continuation, rows=rows)
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
