"""The SQLite store's own group commit, below the contract both stores keep."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from starmap.errors import NotFound, StorageUnavailable
from starmap.storage import base
from starmap.storage.sqlite import SqliteStore

T = "Stars"


async def test_a_write_whose_error_ends_the_transaction_fails_its_group_and_nothing_lands(
    tmp_path: Path,
) -> None:
    """A one-statement write runs without a savepoint of its own. If its error rolled the whole
    transaction back (SQLite does on some I/O errors), the writes after it must not run outside
    any transaction, committed at once while the group is answered as failed."""
    store = SqliteStore(data_dir=tmp_path, table_prefix="")
    await store.ensure_tables([T])

    def ends_the_transaction(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    # The writer is held a moment, so the two writes below are taken as one group, in order.
    taken = threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        taken.set()
        time.sleep(0.3)

    busy = asyncio.ensure_future(store._write(hold))
    assert await asyncio.to_thread(taken.wait, 10)
    ending = asyncio.ensure_future(store._write(ends_the_transaction, single=True))
    after = asyncio.ensure_future(store.insert(T, {"PartitionKey": "p", "RowKey": "after", "v": 1}))
    await busy
    outcomes = await asyncio.gather(ending, after, return_exceptions=True)
    assert [type(o) for o in outcomes] == [StorageUnavailable, StorageUnavailable]
    with pytest.raises(NotFound):
        await store.get(T, "p", "after")
    # The store goes on: the next write lands.
    await store.insert(T, {"PartitionKey": "p", "RowKey": "next", "v": 2})
    assert (await store.get(T, "p", "next")).entity["v"] == 2
    await store.close()


async def test_a_single_write_the_checks_refuse_fails_at_its_await_and_queues_nothing(tmp_path: Path) -> None:
    """insert, update and upsert hand back a future, not a coroutine; a write the checks refuse
    (a key Azure refuses, a bad table name) still raises at the await, not at the call, and
    nothing reaches the writer."""
    store = SqliteStore(data_dir=tmp_path, table_prefix="")
    await store.ensure_tables([T])
    commits = store.write_requests
    refused = [
        (store.insert(T, {"PartitionKey": "p", "RowKey": "a/b", "v": 1}), "Azure Tables refuses"),
        (store.update(T, {"PartitionKey": "p", "RowKey": "r", "v": 1}, ""), "needs the ETag"),
        (store.upsert("no such table!", {"PartitionKey": "p", "RowKey": "r", "v": 1}), "invalid table name"),
    ]
    for pending, why in refused:
        with pytest.raises(ValueError, match=why):
            await pending
    await store.insert(T, {"PartitionKey": "p", "RowKey": "r", "v": 2})  # the writer took only this
    assert store.write_requests == commits + 1
    assert (await store.get(T, "p", "r")).entity["v"] == 2
    await store.close()


def test_a_key_checked_once_is_remembered_a_refused_one_never_and_the_memory_is_bounded() -> None:
    """``check_key`` keeps the keys that passed (a like checks its star's two on every write):
    a refused key is refused every time, a str subclass is checked every time, and the set
    empties when full."""
    base._CHECKED_KEYS.clear()
    assert base.check_key("s1", "RowKey") == "s1"
    assert "s1" in base._CHECKED_KEYS
    for _ in range(2):
        with pytest.raises(ValueError, match="refuses"):
            base.check_key("a/b", "RowKey")
    assert "a/b" not in base._CHECKED_KEYS

    class Odd(str):
        __slots__ = ()

    assert base.check_key(Odd("odd"), "RowKey") == "odd" and "odd" not in base._CHECKED_KEYS
    for i in range(base._CHECKED_KEYS_MAX + 10):
        base.check_key(f"k{i}")
    assert 0 < len(base._CHECKED_KEYS) <= base._CHECKED_KEYS_MAX
