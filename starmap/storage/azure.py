"""The Azure Tables store, on ``azure.data.tables.aio``.

Conditional writes always send the ETag with ``MatchConditions.IfNotModified``
(the SDK's default is last-write-wins); filters are parameterised; every SDK
error leaves this module as one of the project's own errors. A semaphore bounds
the requests in flight: the service throttles and Azurite resets connections
when too many arrive at once. Writes of one partition that gather while it is
being written go as one entity-group transaction once there are enough of them to
pay for it (``starmap.storage.coalesce``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import EdmType, EntityProperty, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

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
from .coalesce import PartitionWriter, TransactionFailed

__all__ = ("AzureTableStore",)

T = TypeVar("T")
_REPLACE: Final = {"mode": UpdateMode.REPLACE}
_CONDITIONS: Final = {"UpdateConditionNotSatisfied", "ConditionNotMet"}
# Few SDK retries: our actors retry with their own budget, and readiness must answer fast.
# Proxy settings from the environment only when there are some: with them on, aiohttp reads
# ~/.netrc and the proxy variables in a thread for every request.
_CLIENT: Final[dict[str, Any]] = {
    "retry_total": 2,
    "use_env_settings": any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
    ),
}
# Writes of one partition that gather are merged into a transaction from this many operations
# on: azure-core builds and parses a transaction's multipart body with the email package, and
# a transaction of 2 costs more CPU than two single writes (measured against Azurite: 1.7 ms
# per single write, 4.0 ms for a transaction of 2, 6.2 ms for 8, 14.7 ms for 32).
MIN_TRANSACTION: Final = 3
# A failed transaction's message starts with the index of the operation that failed.
_FAILED_AT: Final = re.compile(r"(\d+):")


def _plain(entity: Mapping[str, Any]) -> dict[str, Any]:
    """An SDK entity as a plain dict (Int64 values arrive wrapped)."""
    return {k: v.value if isinstance(v, EntityProperty) else v for k, v in entity.items()}


def _wire(entity: Entity) -> dict[str, Any]:
    """A checked entity as the SDK sends it: ints past 32 bits declared as Int64."""
    return {
        k: EntityProperty(v, EdmType.INT64)
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**31) <= v < 2**31
        else v
        for k, v in entity.items()
    }


def _wired(ops: Sequence[Op]) -> list[Op]:
    """``ops``, checked as one transaction, with their entities as the SDK sends them."""
    check_batch(ops)
    return [op if op.kind == "delete" else Op(op.kind, _wire(op.entity), op.etag) for op in ops]


def _operation(op: Op) -> tuple[Any, ...]:
    """One operation of ``submit_transaction``."""
    if op.kind == "insert":
        return ("create", op.entity)
    if op.kind == "upsert":
        return ("upsert", op.entity, _REPLACE)
    extra: dict[str, Any] = {"mode": UpdateMode.REPLACE} if op.kind == "update" else {}
    if op.etag:
        extra |= {"etag": op.etag, "match_condition": MatchConditions.IfNotModified}
    return (op.kind, dict(op.entity), extra)


def _failed_index(exc: BaseException) -> int | None:
    """The operation a failed transaction names (its message starts "3:"), if it names one."""
    for error in (exc, exc.__cause__):
        message = getattr(error, "message", None)
        if isinstance(error, HttpResponseError) and isinstance(message, str):
            found = _FAILED_AT.match(message)
            if found:
                return int(found.group(1))
    return None


def _etag(metadata: Mapping[str, Any]) -> str:
    return str(metadata["etag"])


def _translate(exc: AzureError, what: str) -> Exception:
    """The project's error for an SDK error."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return StorageUnavailable(f"azure tables unreachable: {type(exc).__name__}")
    if isinstance(exc, HttpResponseError):
        code = str(getattr(exc, "error_code", "") or "")
        status = exc.status_code
        if status == 412 or code in _CONDITIONS:
            return PreconditionFailed(f"{what}: changed since it was read")
        if status == 409 or isinstance(exc, ResourceExistsError) or code == "EntityAlreadyExists":
            return AlreadyExists(f"{what}: exists")
        if status == 404 or code == "ResourceNotFound":
            return NotFound(f"{what}: not found")
        if status is None or status >= 500 or status == 429:
            return StorageUnavailable(f"azure tables answered {status} {code}")
    return exc


class AzureTableStore:
    """A ``TableStore`` on Azure Table Storage (or Azurite)."""

    kind: Final = "azure"

    def __init__(
        self,
        service: TableServiceClient,
        *,
        table_prefix: str,
        max_concurrency: int,
        timeout: float,
        write_interval: float = 0.0,
        credential: Any = None,
    ) -> None:
        self._service = service
        self._prefix = table_prefix
        self._limit = asyncio.Semaphore(max_concurrency)
        self._timeout = timeout
        self._writer = PartitionWriter(
            self._send,
            writers=max_concurrency,
            timeout=timeout,
            min_transaction=MIN_TRANSACTION,
            spacing=write_interval,
        )
        self._deletes = 0
        self._credential = credential
        self._tables: dict[str, TableClient] = {}

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> AzureTableStore:
        service = TableServiceClient.from_connection_string(connection_string, **_CLIENT)
        return cls(service, **kwargs)

    @classmethod
    def from_managed_identity(cls, account_url: str, **kwargs: Any) -> AzureTableStore:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        service = TableServiceClient(endpoint=account_url, credential=credential, **_CLIENT)
        return cls(service, credential=credential, **kwargs)

    # -- plumbing -------------------------------------------------------------

    def _table(self, name: str) -> TableClient:
        client = self._tables.get(name)
        if client is None:
            client = self._service.get_table_client(check_table_name(self._prefix + name))
            self._tables[name] = client
        return client

    @asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        try:
            async with self._limit, asyncio.timeout(self._timeout):
                yield
        except TimeoutError as exc:
            raise StorageUnavailable(f"azure tables: no answer within {self._timeout:g}s ({what})") from exc
        except AzureError as exc:
            translated = _translate(exc, what)
            if translated is exc:
                raise
            raise translated from exc

    async def _do(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        async with self._call(what):
            return await call()

    # -- the protocol ---------------------------------------------------------

    async def ensure_tables(self, names: Sequence[str]) -> None:
        for name in names:
            table = check_table_name(self._prefix + name)
            await self._do(f"create {table}", lambda t=table: self._service.create_table_if_not_exists(t))  # type: ignore[misc]

    async def get(self, table: str, partition_key: str, row_key: str) -> Stored:
        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        client = self._table(table)
        entity = await self._do(
            f"{table} ({partition_key!r}, {row_key!r})", lambda: client.get_entity(partition_key, row_key)
        )
        return Stored(_plain(entity), _etag(entity.metadata))

    async def insert(self, table: str, entity: Entity) -> str:
        return await self._write_one(table, Op("insert", entity))

    async def update(self, table: str, entity: Entity, etag: str) -> str:
        return await self._write_one(table, Op("update", entity, etag))

    async def upsert(self, table: str, entity: Entity) -> str:
        return await self._write_one(table, Op("upsert", entity))

    async def delete(self, table: str, partition_key: str, row_key: str, etag: str | None = None) -> None:
        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        client = self._table(table)
        condition = MatchConditions.IfNotModified if etag else MatchConditions.Unconditionally
        self._deletes += 1
        await self._do(
            f"{table} delete",
            lambda: client.delete_entity(partition_key, row_key, etag=etag, match_condition=condition),
        )

    async def query(
        self,
        table: str,
        partition_key: str | None = None,
        *,
        limit: int = DEFAULT_PAGE,
        continuation: str | None = None,
        rows: RowRange | None = None,
    ) -> Page:
        client = self._table(table)
        clauses, parameters = [], {}
        if partition_key is not None:
            clauses.append("PartitionKey eq @pk")
            parameters["pk"] = check_key(partition_key, "PartitionKey")
        if rows is not None:
            clauses.append("RowKey ge @start and RowKey lt @stop")
            parameters |= {"start": rows.start, "stop": rows.stop}
        if clauses:
            pager = client.query_entities(
                " and ".join(clauses), parameters=parameters, results_per_page=limit
            )
        else:
            pager = client.list_entities(results_per_page=limit)
        pages = pager.by_page(continuation_token=json.loads(continuation) if continuation else None)

        async def first_page() -> list[Stored]:
            page = await pages.__anext__()
            return [Stored(_plain(e), _etag(e.metadata)) async for e in page]

        items = await self._do(f"{table} query", first_page)
        token = pages.continuation_token  # type: ignore[attr-defined]
        return Page(items, json.dumps(token) if token else None)

    async def batch(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        return await self._writer.write(table, _wired(ops))

    async def _write_one(self, table: str, op: Op) -> str:
        etag = (await self._writer.write(table, _wired([op])))[0]
        assert etag is not None
        return etag

    async def _send(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        """One request for ``ops`` (the partition writer's): a transaction, or one plain call."""
        client = self._table(table)
        try:
            if len(ops) == 1 and ops[0].kind != "delete":  # a plain call is the cheaper request
                return [await self._do(f"{table} {ops[0].kind}", lambda: self._single(client, ops[0]))]
            results = await self._do(
                f"{table} batch", lambda: client.submit_transaction([_operation(op) for op in ops])
            )
        except StorageUnavailable:  # no answer, or 5xx: all of it landed or none did
            raise
        except Exception as exc:
            raise TransactionFailed(0 if len(ops) == 1 else _failed_index(exc), exc) from exc
        return [None if op.kind == "delete" else _etag(r) for op, r in zip(ops, results, strict=True)]

    @staticmethod
    async def _single(client: TableClient, op: Op) -> str:
        if op.kind == "insert":
            return _etag(await client.create_entity(op.entity))
        if op.kind == "upsert":
            return _etag(await client.upsert_entity(op.entity, mode=UpdateMode.REPLACE))
        result = await client.update_entity(
            op.entity, mode=UpdateMode.REPLACE, etag=op.etag, match_condition=MatchConditions.IfNotModified
        )
        return _etag(result)

    @property
    def write_requests(self) -> int:
        return self._writer.requests + self._deletes

    async def count(self, table: str) -> int:
        client = self._table(table)

        async def count_all() -> int:
            return sum([1 async for _ in client.list_entities(select=["RowKey"])])

        return await self._do(f"{table} count", count_all)

    async def ping(self) -> None:
        async def one_table() -> None:
            async for _ in self._service.list_tables(results_per_page=1):
                break

        await self._do("ping", one_table)

    async def close(self) -> None:
        await self._writer.close()
        await self._service.close()
        if self._credential is not None:
            await self._credential.close()
