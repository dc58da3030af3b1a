"""The table store protocol that every backend keeps.

The model is Azure Table Storage's: tables of entities keyed by
(``PartitionKey``, ``RowKey``), each with an opaque ETag that changes on every
write. Values are ``str``, ``int``, ``float`` or ``bool``. Conditional writes and
atomic batches within one partition are the tools for concurrency; the embedded
SQLite backend keeps the same rules, so code written against one runs on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, NamedTuple, Protocol, TypeVar

import attrs

from ..frozen import immutable

__all__ = (
    "MAX_BATCH",
    "Entity",
    "Op",
    "Page",
    "RowRange",
    "Stored",
    "TableStore",
    "check_batch",
    "check_entity",
    "check_key",
    "check_table_name",
    "delete_rows",
    "iter_entities",
    "iter_pages",
    "partition_chunks",
)

T = TypeVar("T")
Entity = Mapping[str, Any]
MAX_BATCH: Final = 100
MAX_KEY_BYTES: Final = 1024
DEFAULT_PAGE: Final = 1000

# Azure's rules: no / \ # ? and no control characters in keys; the SDK lets them
# through and the service answers with an opaque 400, so we refuse them first.
_BAD_KEY: Final = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_TABLE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_RESERVED: Final = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag", "odata.etag"})
VALUE_TYPES: Final = (str, int, float, bool)
_PROPERTY_RESERVED: Final = _RESERVED - {"PartitionKey", "RowKey"}
_PLAIN_VALUES: Final = frozenset({str, float, bool})  # exactly these types need no further check


@immutable  # one per row read: every row of every table at start-up
class Stored:
    """An entity as read from the store, with the ETag of that version."""

    entity: dict[str, Any]
    etag: str

    @property
    def partition_key(self) -> str:
        return str(self.entity["PartitionKey"])

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])


@attrs.frozen
class Page:
    """One page of a query and the token that fetches the next (None: the last)."""

    items: list[Stored]
    continuation: str | None


@attrs.frozen
class RowRange:
    """The row keys from ``start`` (included) to ``stop`` (excluded), in the store's order."""

    start: str
    stop: str


class Op(NamedTuple):  # a tuple: one per write (every like's), at ~600 ns against attrs' ~950
    """One operation of a batch.

    ``insert`` fails if the key exists; ``update`` needs ``etag`` to match;
    ``upsert`` replaces whatever is there; ``delete`` needs the entity to exist
    (and ``etag`` to match when given).
    """

    kind: Literal["insert", "update", "upsert", "delete"]
    entity: Entity
    etag: str | None = None

    @classmethod
    def delete(cls, partition_key: str, row_key: str, etag: str | None = None) -> Op:
        return cls("delete", {"PartitionKey": partition_key, "RowKey": row_key}, etag)


class TableStore(Protocol):
    """What Star Map needs from a table store; see the module docstring."""

    @property
    def kind(self) -> str:
        """The backend's name: "sqlite" or "azure"."""

    async def ensure_tables(self, names: Sequence[str]) -> None:
        """Create the tables that are missing."""

    async def get(self, table: str, partition_key: str, row_key: str) -> Stored:
        """The entity at that key; ``NotFound`` if there is none."""

    # insert, update and upsert: an awaitable, not necessarily a coroutine (SQLite's single
    # write hands back its future, a frame fewer per like); a refused write fails at the await.
    def insert(self, table: str, entity: Entity) -> Awaitable[str]:
        """Add a new entity and return its ETag; ``AlreadyExists`` if the key is taken."""

    def update(self, table: str, entity: Entity, etag: str) -> Awaitable[str]:
        """Replace the entity if its ETag still is ``etag``; the new ETag.

        ``PreconditionFailed`` if it changed, ``NotFound`` if it is gone.
        """

    def upsert(self, table: str, entity: Entity) -> Awaitable[str]:
        """Insert or replace, unconditionally; the new ETag."""

    async def delete(self, table: str, partition_key: str, row_key: str, etag: str | None = None) -> None:
        """Remove the entity; a missing one is no error. With ``etag``, only that version."""

    async def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        limit: int = DEFAULT_PAGE,
        continuation: str | None = None,
        rows: RowRange | None = None,
    ) -> Page:
        """One page of a partition (or, with None, of the whole table) in key order.

        ``rows`` keeps the row keys ``start <= RowKey < stop`` (the store filters them).
        """

    async def batch(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        """Apply ``ops`` (one partition, ≤ 100, one per key) all or nothing.

        Returns the new ETag of each operation (None for a delete). On failure
        nothing is applied and the error of the first failing operation is raised.
        """

    async def count(self, table: str) -> int:
        """How many entities the table holds (a full scan: for debugging only)."""

    @property
    def write_requests(self) -> int:
        """Round trips that carried writes so far: Azure requests, SQLite commits."""

    async def ping(self) -> None:
        """Reach the store; ``StorageUnavailable`` if it does not answer."""

    async def close(self) -> None:
        """Release connections and threads."""


async def iter_pages(
    store: TableStore,
    table: str,
    partition_key: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE,
    rows: RowRange | None = None,
) -> AsyncGenerator[list[Stored], None]:
    """Every entity of a partition (or a table), a page at a time, following continuations;
    ``rows``: see ``query``. For a caller that reads every row (a start-up's load): a step of
    an async generator per page, not per row.

    The next page is asked for before this one is handed out: the store reads it (a thread
    for SQLite, the network for Azure) while the caller works through this one.
    """

    def ask(continuation: str | None) -> asyncio.Future[Page]:
        query = store.query(table, partition_key, limit=page_size, continuation=continuation, rows=rows)
        return asyncio.ensure_future(query)

    fetch = ask(None)
    try:
        while True:
            page = await fetch
            if page.continuation is not None:
                fetch = ask(page.continuation)
            yield page.items
            if page.continuation is None:
                return
    finally:  # the caller stopped early: the page read ahead is not wanted
        if not fetch.cancel() and not fetch.cancelled():
            fetch.exception()  # done: a failed read nobody waits for is not "never retrieved"


async def iter_entities(
    store: TableStore,
    table: str,
    partition_key: str | None = None,
    *,
    page_size: int = DEFAULT_PAGE,
    rows: RowRange | None = None,
) -> AsyncGenerator[Stored, None]:
    """Every entity of a partition (or a table), one at a time (``iter_pages``' pages)."""
    async with contextlib.aclosing(
        iter_pages(store, table, partition_key, page_size=page_size, rows=rows)
    ) as pages:
        async for page in pages:
            for item in page:
                yield item


def partition_chunks(items: Iterable[T], partition_of: Callable[[T], str]) -> Iterator[list[T]]:
    """``items`` grouped by partition, in lists of at most ``MAX_BATCH``: the shape of a batch."""
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[partition_of(item)].append(item)
    for group in groups.values():
        for start in range(0, len(group), MAX_BATCH):
            yield group[start : start + MAX_BATCH]


async def delete_rows(
    store: TableStore,
    table: str,
    keys: Iterable[tuple[str, str]],
    *,
    after_chunk: Callable[[list[str]], Awaitable[None]] | None = None,
) -> int:
    """Delete rows by (partition, row) key, a batch per partition chunk; how many.

    ``after_chunk`` gets the row keys of each chunk once it is deleted (for indexes
    that must follow the store chunk by chunk).
    """
    deleted = 0
    for chunk in partition_chunks(keys, lambda key: key[0]):
        await store.batch(table, [Op.delete(pk, rk) for pk, rk in chunk])
        deleted += len(chunk)
        if after_chunk is not None:
            await after_chunk([rk for _, rk in chunk])
    return deleted


def check_table_name(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise ValueError(f"invalid table name {name!r}: 3-63 letters and digits, a letter first")
    return name


# Keys that passed ``check_key``: a star's row key and partition are checked on every like,
# ~500 ns each (a regex search and an encode), ~70 ns found here (functools.lru_cache: ~220).
# Bounded: emptied when full (a million stars liked at random would otherwise all stay).
_CHECKED_KEYS: Final[set[str]] = set()
_CHECKED_KEYS_MAX: Final = 1 << 16


def check_key(key: object, what: str = "key") -> str:
    """Refuse what Azure refuses in a PartitionKey or RowKey."""
    if type(key) is str and key in _CHECKED_KEYS:
        return key
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a string, not {type(key).__name__}")
    if _BAD_KEY.search(key) or len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"{what} {key!r} has a character Azure Tables refuses or is too long")
    if type(key) is str:  # not a subclass: its own hash and equality decide nothing here
        if len(_CHECKED_KEYS) >= _CHECKED_KEYS_MAX:
            _CHECKED_KEYS.clear()
        _CHECKED_KEYS.add(key)
    return key


def check_entity(entity: Entity) -> dict[str, Any]:
    """Validate keys and value types; the entity as a plain dict."""
    check_key(entity.get("PartitionKey"), "PartitionKey")
    check_key(entity.get("RowKey"), "RowKey")
    reserved = not _PROPERTY_RESERVED.isdisjoint(entity)  # almost never: one set pass, not one per name
    for name, value in entity.items():
        if reserved and name in _PROPERTY_RESERVED:
            raise ValueError(f"property {name!r} is reserved")
        if type(value) in _PLAIN_VALUES:  # the common case, settled by one lookup
            continue
        if not isinstance(value, VALUE_TYPES):
            raise TypeError(f"property {name!r}: {type(value).__name__} is not a table value")
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ValueError(f"property {name!r} does not fit in 64 bits")
    return dict(entity)


def check_batch(ops: Sequence[Op]) -> list[dict[str, Any]]:
    """Refuse what an Azure transaction refuses, before anything is sent; each op's entity,
    checked, as a plain dict (what ``check_entity`` gives; a delete's keys only checked)."""
    if len(ops) == 1:  # a single write (most are): no partition or key to compare
        return [_check_op(ops[0])]
    if not ops:
        raise ValueError("an empty batch")
    if len(ops) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} operations")
    partitions = {op.entity.get("PartitionKey") for op in ops}
    if len(partitions) != 1:
        raise ValueError("a batch must stay within one partition")
    rows = [op.entity.get("RowKey") for op in ops]
    if len(set(rows)) != len(rows):
        raise ValueError("a batch may touch each entity only once")
    return [_check_op(op) for op in ops]


def _check_op(op: Op) -> dict[str, Any]:
    if op.kind == "delete":
        check_key(op.entity.get("PartitionKey"), "PartitionKey")
        check_key(op.entity.get("RowKey"), "RowKey")
        return dict(op.entity)
    if op.kind == "update" and not op.etag:
        raise ValueError("an update needs the ETag it expects")
    return check_entity(op.entity)
