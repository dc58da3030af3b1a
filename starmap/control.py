"""Word from the command line to running replicas: "the tables changed, reload".

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

from .errors import NotFound, StorageUnavailable
from .layout import LAYOUT, LAYOUT_PROPERTY
from .storage import CONTROL_TABLE, TableStore

__all__ = ("ReloadWatcher", "request_reload")

log = logging.getLogger(__name__)

PARTITION: Final = "control"
RELOAD: Final = "reload"


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
