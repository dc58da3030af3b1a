"""The embedded table store: one SQLite file, Azure Tables' rules.

Nothing runs on the event loop: reads go to a reader thread with its own
connection, writes to one writer thread. WAL mode with ``synchronous=FULL``: a
commit that returned is on disk.

Group commit: the writer takes every write waiting for it, runs each in one
transaction (a write of several statements in a savepoint of its own, so one
write's failure is its own), and commits once. While one fsync is under way the
next batch gathers, so many concurrent writes (likes on a thousand stars) cost one
disk flush instead of one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import sqlite3
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar, cast

import orjson

from ..batching import take_batch
from ..errors import AlreadyExists, NotFound, PreconditionFailed, StorageUnavailable
from .base import (
    DEFAULT_PAGE,
    Entity,
    Op,
    Page,
    RowRange,
    Stored,
    check_batch,
    check_key,
    check_table_name,
)

__all__ = ("SqliteStore",)

T = TypeVar("T")
FILE_NAME: Final = "starmap.sqlite3"
MAX_GROUP: Final = 512  # writes at most in one transaction


class _Job(NamedTuple):  # a tuple: one per write, at half an attrs class's cost
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    # One statement: atomic by itself (SQLite undoes a failed statement whole), so it needs
    # no savepoint of its own; a multi-statement job gets one, so its failure is its own.
    single: bool = False


class _Statements(NamedTuple):
    insert: str
    upsert: str
    update: str
    update_if: str  # the etag it expects
    delete: str
    delete_if: str
    exists: str

    @classmethod
    def of(cls, table: str) -> _Statements:
        key = "WHERE pk = ? AND rk = ?"
        return cls(
            f"INSERT INTO {table} VALUES (?, ?, ?, ?)",
            f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?)",
            f"UPDATE {table} SET etag = ?, body = ? {key}",
            f"UPDATE {table} SET etag = ?, body = ? {key} AND etag = ?",
            f"DELETE FROM {table} {key}",
            f"DELETE FROM {table} {key} AND etag = ?",
            f"SELECT 1 FROM {table} {key}",
        )


def _settle(settled: list[tuple[_Job, bool, Any]]) -> None:
    """On the loop: answer each job of a commit (one call for all of them, not one each)."""
    for job, ok, value in settled:
        if job.future.done():  # the caller was cancelled; the write happened all the same
            continue
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


_ETAG_PREFIX: Final = uuid.uuid4().hex[:12]  # this store's; the counter is the writer thread's
_ETAGS: Final = itertools.count(1)


def _new_etag() -> str:
    """A fresh ETag: unique for the file (a random prefix per process, then a counter)."""
    return f'W/"{_ETAG_PREFIX}-{next(_ETAGS)}"'


# NaN and infinities are Doubles Azure Tables stores too (rows edited by hand have them): the
# standard library writes them, orjson writes null. One encoder for every such row.
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":"))


def _body(props: dict[str, Any]) -> str:
    """The row's properties (its keys taken out) as JSON: orjson (a fifth of the writer thread's
    time went to the standard library's encoder), or the standard library where orjson would
    lose something."""
    try:
        body = orjson.dumps(props)
    except orjson.JSONEncodeError:  # a lone surrogate, say: the standard library's rules, as before
        return _ENCODER.encode(props)
    if b"null" in body:  # a non-finite double became null (or a text says null): keep it exact
        return _ENCODER.encode(props)
    return body.decode()


def _error(exc: sqlite3.Error, table: str | None = None) -> Exception:
    """The project's error for an SQLite one: a missing table is ``NotFound``, as on Azure."""
    if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
        return NotFound(f"{table or 'table'}: the table does not exist")
    return StorageUnavailable(f"sqlite: {exc}")


def _stored(pk: str, rk: str, etag: str, body: str) -> Stored:
    try:  # orjson: several times faster, and every start-up reads every row
        props = orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN or an infinity (JSON has neither): the standard library reads them
        props = json.loads(body)
    props["PartitionKey"], props["RowKey"] = pk, rk  # the keys live in their own columns
    return Stored(props, etag)


def _apply(
    conn: sqlite3.Connection, sql: _Statements, table: str, op: Op, entity: dict[str, Any]
) -> str | None:
    """One checked operation, on the writer thread; its new ETag (None for a delete).

    ``entity`` is the checks' own copy: its keys are taken out of it, and the rest is the body."""
    pk, rk = entity.pop("PartitionKey"), entity.pop("RowKey")
    etag = None if op.kind == "delete" else _new_etag()
    if op.kind == "insert":
        try:
            conn.execute(sql.insert, (pk, rk, etag, _body(entity)))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"{table}: ({pk!r}, {rk!r}) exists") from None
        return etag
    if op.kind == "upsert":
        conn.execute(sql.upsert, (pk, rk, etag, _body(entity)))
        return etag
    if op.kind == "update":
        if op.etag:
            done = conn.execute(sql.update_if, (etag, _body(entity), pk, rk, op.etag))
        else:
            done = conn.execute(sql.update, (etag, _body(entity), pk, rk))
    elif op.etag:
        done = conn.execute(sql.delete_if, (pk, rk, op.etag))
    else:
        done = conn.execute(sql.delete, (pk, rk))
    if done.rowcount == 0:
        if conn.execute(sql.exists, (pk, rk)).fetchone():
            raise PreconditionFailed(f"{table}: ({pk!r}, {rk!r}) changed since it was read")
        raise NotFound(f"{table}: no entity ({pk!r}, {rk!r})")
    return etag


class SqliteStore:
    """A ``TableStore`` on one SQLite file under ``data_dir``."""

    kind: Final = "sqlite"

    def __init__(self, *, data_dir: Path, table_prefix: str) -> None:
        self.path = data_dir / FILE_NAME
        self._prefix = table_prefix
        self._tables: dict[str, str] = {}
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="starmap-sqlite-read")
        self._read_conn: sqlite3.Connection | None = None
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._sql: dict[str, _Statements] = {}
        self._commits = 0  # the writer thread's count; ints are read whole under the GIL

    # -- plumbing -------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read, on the reader thread."""

        def call() -> T:
            if self._read_conn is None:
                self._read_conn = self._connect()
            return fn(self._read_conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, call)
        except sqlite3.Error as exc:
            raise _error(exc) from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T], *, single: bool = False) -> asyncio.Future[T]:
        """A write, applied by the writer thread in the next group commit (in a savepoint of its
        own unless it is ``single``: one statement); its outcome, to await.

        A plain call that hands back the future: a write is one frame deep in its caller, not
        three (each coroutine layer costs every write a frame to make and to resume)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="starmap-sqlite-write", daemon=True)
            self._writer.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, future, loop, single))
        return future

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while (first := self._jobs.get()) is not None:
                # None (the stop request) ends the batch and is never part of it.
                take = cast(Callable[[], _Job], self._jobs.get_nowait)
                jobs, stop = take_batch(first, take, MAX_GROUP, stop=None)
                self._commit(conn, jobs)
                if stop:
                    break
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if job.single:  # no savepoint: two statements (and GIL hand-offs) fewer per write
                    try:
                        outcomes.append((True, job.fn(conn)))
                    except Exception as exc:
                        if not conn.in_transaction:  # an error that ended the transaction: all fail
                            raise
                        outcomes.append((False, exc))
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job.fn(conn)))
                    conn.execute("RELEASE job")
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
            conn.execute("COMMIT")
            self._commits += 1
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(jobs)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, bool, Any]]] = {}
        for job, (ok, value) in zip(jobs, outcomes, strict=True):
            if isinstance(value, sqlite3.Error):
                ok, value = False, _error(value)
            by_loop.setdefault(job.loop, []).append((job, ok, value))
        for loop, settled in by_loop.items():  # one wake-up of each loop per commit
            loop.call_soon_threadsafe(_settle, settled)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _table(self, name: str) -> str:
        quoted = self._tables.get(name)
        if quoted is None:  # checked once per name, not on every call of the hot path
            quoted = self._tables[name] = '"' + check_table_name(self._prefix + name) + '"'
        return quoted

    def _statements(self, name: str) -> _Statements:
        """The table's write statements, made once: the same string object every time is
        the statement cache's key hashed once, not a new string formatted for every write."""
        statements = self._sql.get(name)
        if statements is None:
            statements = self._sql[name] = _Statements.of(self._table(name))
        return statements

    # -- the protocol ---------------------------------------------------------

    async def ensure_tables(self, names: Sequence[str]) -> None:
        tables = [self._table(n) for n in names]

        def create(conn: sqlite3.Connection) -> None:
            for table in tables:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} "
                    "(pk TEXT NOT NULL, rk TEXT NOT NULL, etag TEXT NOT NULL, body TEXT NOT NULL, "
                    "PRIMARY KEY (pk, rk)) WITHOUT ROWID"
                )

        await self._write(create)

    async def get(self, table: str, partition_key: str, row_key: str) -> Stored:
        sql_table = self._table(table)
        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")

        def read(conn: sqlite3.Connection) -> tuple[str, str] | None:
            return conn.execute(  # type: ignore[no-any-return]
                f"SELECT etag, body FROM {sql_table} WHERE pk = ? AND rk = ?", (partition_key, row_key)
            ).fetchone()

        row = await self._run(read)
        if row is None:
            raise NotFound(f"{table}: no entity ({partition_key!r}, {row_key!r})")
        return _stored(partition_key, row_key, row[0], row[1])

    # A single write hands back its future: no coroutine of its own (a like's write is one).
    def insert(self, table: str, entity: Entity) -> Awaitable[str]:
        return self._one(table, Op("insert", entity))

    def update(self, table: str, entity: Entity, etag: str) -> Awaitable[str]:
        return self._one(table, Op("update", entity, etag))

    def upsert(self, table: str, entity: Entity) -> Awaitable[str]:
        return self._one(table, Op("upsert", entity))

    async def delete(self, table: str, partition_key: str, row_key: str, etag: str | None = None) -> None:
        with contextlib.suppress(NotFound):  # as Azure's SDK: deleting what is gone is no error
            await self._batch(table, [Op.delete(partition_key, row_key, etag)])

    async def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        limit: int = DEFAULT_PAGE,
        continuation: str | None = None,
        rows: RowRange | None = None,
    ) -> Page:
        sql_table = self._table(table)
        after = json.loads(continuation) if continuation else None
        where, params = [], []
        if partition_key is not None:
            where.append("pk = ?")
            params.append(check_key(partition_key, "PartitionKey"))
        if rows is not None:
            where.append("rk >= ? AND rk < ?")
            params.extend((rows.start, rows.stop))
        if after is not None:
            where.append("(pk, rk) > (?, ?)")
            params.extend(after)
        sql = f"SELECT pk, rk, etag, body FROM {sql_table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pk, rk LIMIT ?"

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
            return conn.execute(sql, (*params, limit + 1)).fetchall()

        found = await self._run(read)
        items = [_stored(*row) for row in found[:limit]]
        more = len(found) > limit
        token = json.dumps([items[-1].partition_key, items[-1].row_key]) if more else None
        return Page(items, token)

    async def batch(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        return await self._batch(table, ops)

    def _batch(self, table: str, ops: Sequence[Op]) -> asyncio.Future[list[str | None]]:
        """The batch checked (raising here, before anything is queued) and queued; its etags to await."""
        sql = self._statements(table)
        ops = tuple(ops)  # what was checked is what is written, whatever the caller does next
        entities = check_batch(ops)  # each op's, in order

        def apply(conn: sqlite3.Connection) -> list[str | None]:
            # By index, not zip(strict=True): its keyword cost every write ~1,700 instructions.
            return [_apply(conn, sql, table, ops[i], entities[i]) for i in range(len(ops))]

        return self._write(apply, single=len(ops) == 1)

    def _one(self, table: str, op: Op) -> asyncio.Future[str]:
        """One insert, update or upsert checked and queued; its new ETag, to await. A write the
        checks refuse fails at the await, as it would in a coroutine (nothing is queued)."""
        try:
            sql = self._statements(table)
            [entity] = check_batch((op,))
        except Exception as exc:
            refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused
        return self._write(lambda conn: cast(str, _apply(conn, sql, table, op, entity)), single=True)

    async def count(self, table: str) -> int:
        sql_table = self._table(table)
        return await self._run(
            lambda conn: int(conn.execute(f"SELECT count(*) FROM {sql_table}").fetchone()[0])
        )

    @property
    def write_requests(self) -> int:
        return self._commits

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Finish the writes already queued, then close both connections."""
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None

        def shut(_: sqlite3.Connection) -> None:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None

        if self._read_conn is not None:
            await self._run(shut)
        self._reader.shutdown(wait=True)
