"""What a table store says about itself, in its control table; word from tools to replicas.

``StarmapControl/control/star-partitions`` records how many partitions the ``Stars``
table spreads its stars over (``star_partitions``): decided once, by whichever process
first writes stars to the store, and read by every process that opens it after.

The rest of this module is word from the command line to running replicas: "the tables
changed, reload".

``starmap import-legacy`` and ``starmap import`` write rows straight into the table
store, past the actors that own the indexes. When they are done (and every few
seconds while they run) they rewrite one row, ``StarmapControl/control/reload``.
Every replica reads that row every ``STORAGE_RELOAD_POLL_SECONDS``; when its ETag
changes, the replica reloads its star and user indexes from the store and tells
its event streams to refetch (``resync``). This works the same on SQLite, on Azure
Tables and with any number of replicas, needs no address or key of the running
service, and costs one point read per replica per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from .errors import AlreadyExists, NotFound, StorageUnavailable
from .layout import LAYOUT, LAYOUT_PROPERTY
from .stars import BUCKETS, STAR_PARTITIONS, StarPartitions, is_star_row
from .storage import CONTROL_TABLE, STARS, TableStore, iter_entities

__all__ = ("ReloadWatcher", "request_reload", "star_partitions")

log = logging.getLogger(__name__)

PARTITION: Final = "control"
RELOAD: Final = "reload"
PARTITIONS: Final = "star-partitions"


async def star_partitions(
    store: TableStore, *, proposed: int = STAR_PARTITIONS, record: bool = True
) -> StarPartitions:
    """How the store's ``Stars`` table spreads its stars, recorded on first use.

    A table that holds this service's stars and no record was written before the count
    was recorded: its rows are at the 32 of ``bucket``, and stay there. Any other table
    (new, or holding only the original service's rows) gets ``proposed``. Processes that
    decide at once agree: the first record wins, the others read it. ``record=False``:
    what would be decided, nothing written (a dry run; the tables may not exist).
    """
    try:
        return _partitions((await store.get(CONTROL_TABLE, PARTITION, PARTITIONS)).entity)
    except NotFound:
        pass
    count = BUCKETS if await _holds_stars(store) else proposed
    if not record:
        return StarPartitions(count)
    row = {"PartitionKey": PARTITION, "RowKey": PARTITIONS, "count": count, LAYOUT_PROPERTY: LAYOUT}
    try:
        await store.insert(CONTROL_TABLE, row)
    except AlreadyExists:
        return _partitions((await store.get(CONTROL_TABLE, PARTITION, PARTITIONS)).entity)
    log.info("%s: stars go in %d partitions (recorded in %s)", STARS, count, CONTROL_TABLE)
    return StarPartitions(count)


def _partitions(entity: dict[str, object]) -> StarPartitions:
    try:
        return StarPartitions(entity.get("count"))  # type: ignore[arg-type]  # its validator checks
    except ValueError as exc:
        raise ValueError(f"{CONTROL_TABLE}/{PARTITION}/{PARTITIONS}: {exc}") from None


async def _holds_stars(store: TableStore) -> bool:
    """Whether any row of ``Stars`` is this service's (the first one found ends the scan)."""
    rows = iter_entities(store, STARS)
    try:
        async with contextlib.aclosing(rows):  # found: the page read ahead is cancelled now
            async for stored in rows:
                if is_star_row(stored.entity):
                    return True
    except NotFound:  # no such table (yet)
        pass
    return False


async def request_reload(store: TableStore, reason: str) -> None:
    """Ask every running replica to reload its indexes from the store."""
    await store.upsert(
        CONTROL_TABLE,
        {
            "PartitionKey": PARTITION,
            "RowKey": RELOAD,
            "reason": reason,
            "at": time.time(),
            LAYOUT_PROPERTY: LAYOUT,
        },
    )


class ReloadWatcher:
    """Polls the reload row; calls ``on_reload`` once per change it sees."""

    def __init__(
        self, store: TableStore, *, interval: float, on_reload: Callable[[str], Awaitable[None]]
    ) -> None:
        self.store = store
        self.interval = interval
        self.on_reload = on_reload
        self.seen: str | None = None
        self.reloads = 0

    async def _read(self) -> tuple[str | None, str]:
        try:
            stored = await self.store.get(CONTROL_TABLE, PARTITION, RELOAD)
        except NotFound:
            return None, ""
        return stored.etag, str(stored.entity.get("reason", ""))

    async def start(self) -> None:
        """Remember the current row: what was asked before this process started is loaded already."""
        with contextlib.suppress(StorageUnavailable):
            self.seen = (await self._read())[0]

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                etag, reason = await self._read()
            except StorageUnavailable:
                continue  # the store's outage shows in readiness; try again next round
            if etag is None or etag == self.seen:
                continue
            self.seen = etag
            log.info("reload asked (%r): reloading the indexes from the table store", reason)
            try:
                await self.on_reload(reason)
                self.reloads += 1
            except Exception:
                self.seen = None  # try again next round
                log.exception("reload failed; trying again in %.3gs", self.interval)
