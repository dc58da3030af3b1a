"""Reading a store's tables in tests: this service's rows, or everything with its ETag."""

from __future__ import annotations

from typing import Any

from starmap.stars import bucket
from starmap.storage import DATA_TABLES, TableStore, iter_entities


async def ours(store: TableStore, table: str) -> dict[str, dict[str, Any]]:
    """The rows of a table at this service's keys (its own layout), by id."""
    return {
        s.row_key: s.entity async for s in iter_entities(store, table) if s.partition_key == bucket(s.row_key)
    }


async def everything(store: TableStore) -> dict[str, list[tuple[str, str, str]]]:
    """Every row of every data table with its ETag: any write at all changes this."""
    return {
        t: sorted([(s.partition_key, s.row_key, s.etag) async for s in iter_entities(store, t)])
        for t in DATA_TABLES
    }
