"""Reading a store's tables in tests: this service's rows, or everything with its ETag."""

from __future__ import annotations

from typing import Any

from starmap.control import star_partitions
from starmap.stars import STARS, bucket
from starmap.storage import DATA_TABLES, TableStore, iter_entities


async def star_key(store: TableStore, star_id: str) -> tuple[str, str]:
    """Where a star's row is in this store: its partition (by the store's recorded count), its id."""
    return (await star_partitions(store, record=False)).of(star_id), star_id


async def ours(store: TableStore, table: str) -> dict[str, dict[str, Any]]:
    """The rows of a table at this service's keys (its own layout), by id."""
    key = (await star_partitions(store, record=False)).of if table == STARS else bucket
    return {
        s.row_key: s.entity async for s in iter_entities(store, table) if s.partition_key == key(s.row_key)
    }


async def everything(store: TableStore) -> dict[str, list[tuple[str, str, str]]]:
    """Every row of every data table with its ETag: any write at all changes this."""
    return {
        t: sorted([(s.partition_key, s.row_key, s.etag) async for s in iter_entities(store, t)])
        for t in DATA_TABLES
    }
