"""The embedded table store: one SQLite file, Azure Tables' rules.

Every call runs on one dedicated thread that owns the connection, so a slow disk
never blocks the event loop and the connection is never shared between threads.
WAL mode with ``synchronous=FULL``: a commit that returned is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from ..errors import AlreadyExists, NotFound, PreconditionFailed, StorageUnavailable
from .base import (
    DEFAULT_PAGE,
    Entity,
    Op,
    Page,
    Stored,
    check_batch,
    check_entity,
    check_key,
    check_table_name,
)

__all__ = ("SqliteStore",)

T = TypeVar("T")
FILE_NAME: Final = "starmap.sqlite3"


def _new_etag() -> str:
    return f'W/"{uuid.uuid4().hex}"'


def _body(entity: dict[str, Any]) -> str:
    props = {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}
    return json.dumps(props, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _stored(pk: str, rk: str, etag: str, body: str) -> Stored:
    return Stored({"PartitionKey": pk, "RowKey": rk, **json.loads(body)}, etag)


class SqliteStore:
    """A ``TableStore`` on one SQLite file under ``data_dir``."""

    kind: Final = "sqlite"

    def __init__(self, *, data_dir: Path, table_prefix: str = "") -> None:
        self.path = data_dir / FILE_NAME
        self._prefix = table_prefix
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="starmap-sqlite")
        self._conn: sqlite3.Connection | None = None

    # -- plumbing -------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                self._conn = self._connect()
            return fn(self._conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise StorageUnavailable(f"sqlite: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _table(self, name: str) -> str:
        return '"' + check_table_name(self._prefix + name) + '"'

    @staticmethod
    def _transaction(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

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

        await self._run(create)

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

    async def insert(self, table: str, entity: Entity) -> str:
        [etag] = await self.batch(table, [Op("insert", entity)])
        assert etag is not None
        return etag

    async def update(self, table: str, entity: Entity, etag: str) -> str:
        [new_etag] = await self.batch(table, [Op("update", entity, etag)])
        assert new_etag is not None
        return new_etag

    async def upsert(self, table: str, entity: Entity) -> str:
        [etag] = await self.batch(table, [Op("upsert", entity)])
        assert etag is not None
        return etag

    async def delete(self, table: str, partition_key: str, row_key: str, etag: str | None = None) -> None:
        with contextlib.suppress(NotFound):  # as Azure's SDK: deleting what is gone is no error
            await self.batch(table, [Op.delete(partition_key, row_key, etag)])

    async def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        limit: int = DEFAULT_PAGE,
        continuation: str | None = None,
    ) -> Page:
        sql_table = self._table(table)
        after = json.loads(continuation) if continuation else None
        where, params = [], []
        if partition_key is not None:
            where.append("pk = ?")
            params.append(check_key(partition_key, "PartitionKey"))
        if after is not None:
            where.append("(pk, rk) > (?, ?)")
            params.extend(after)
        sql = f"SELECT pk, rk, etag, body FROM {sql_table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY pk, rk LIMIT ?"

        def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
            return conn.execute(sql, (*params, limit + 1)).fetchall()

        rows = await self._run(read)
        items = [_stored(*row) for row in rows[:limit]]
        more = len(rows) > limit
        token = json.dumps([items[-1].partition_key, items[-1].row_key]) if more else None
        return Page(items, token)

    async def batch(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        sql_table = self._table(table)
        check_batch(ops)
        prepared = [(op, check_entity(op.entity) if op.kind != "delete" else dict(op.entity)) for op in ops]

        def apply_one(conn: sqlite3.Connection, op: Op, entity: dict[str, Any]) -> str | None:
            pk, rk = entity["PartitionKey"], entity["RowKey"]
            etag = None if op.kind == "delete" else _new_etag()
            if op.kind == "insert":
                try:
                    conn.execute(
                        f"INSERT INTO {sql_table} VALUES (?, ?, ?, ?)", (pk, rk, etag, _body(entity))
                    )
                except sqlite3.IntegrityError:
                    raise AlreadyExists(f"{table}: ({pk!r}, {rk!r}) exists") from None
                return etag
            if op.kind == "upsert":
                conn.execute(
                    f"INSERT OR REPLACE INTO {sql_table} VALUES (?, ?, ?, ?)", (pk, rk, etag, _body(entity))
                )
                return etag
            where = "pk = ? AND rk = ?" + (" AND etag = ?" if op.etag else "")
            key = (pk, rk, op.etag) if op.etag else (pk, rk)
            if op.kind == "update":
                sql, params = (
                    f"UPDATE {sql_table} SET etag = ?, body = ? WHERE {where}",
                    (etag, _body(entity), *key),
                )
            else:
                sql, params = f"DELETE FROM {sql_table} WHERE {where}", key
            if conn.execute(sql, params).rowcount == 0:
                exists = conn.execute(
                    f"SELECT 1 FROM {sql_table} WHERE pk = ? AND rk = ?", (pk, rk)
                ).fetchone()
                if exists:
                    raise PreconditionFailed(f"{table}: ({pk!r}, {rk!r}) changed since it was read")
                raise NotFound(f"{table}: no entity ({pk!r}, {rk!r})")
            return etag

        def apply(conn: sqlite3.Connection) -> list[str | None]:
            return self._transaction(conn, lambda: [apply_one(conn, op, e) for op, e in prepared])

        return await self._run(apply)

    async def count(self, table: str) -> int:
        sql_table = self._table(table)
        return await self._run(
            lambda conn: int(conn.execute(f"SELECT count(*) FROM {sql_table}").fetchone()[0])
        )

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)
