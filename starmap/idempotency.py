"""Exactly-once writes over HTTP: the ``Idempotency-Key`` header (IETF httpapi draft).

A client sends a unique key with ``POST /stars``, ``POST /stars/{id}/like`` or ``POST
/users``. The actor that makes the write records its answer in the same atomic batch as
the write: a row in the same table and partition, ``RowKey = ~idem:<sha-256>`` (``~``
sorts after every id, so loads read below it and the sweep reads only it), holding the
request's fingerprint, the answer's status, body and ``Location``, and when the record
expires. A repeat finds the record and gets the first answer again, marked with
``Idempotent-Replayed: true``; the same key with another request is refused (422). Since
the record commits with the write or not at all, a process killed between the commit and
the answer leaves the record behind, and the client's retry replays it: counted once.

A key is scoped by its operation and target: a like's by its star; a create's by the id it
makes, which is derived from the key when the body names none, so a retry (on any replica)
lands on the same id and meets its own record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import attrs
import orjson

from .errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    NotFound,
    PreconditionFailed,
    StorageUnavailable,
)
from .layout import LAYOUT, LAYOUT_PROPERTY
from .storage import Op, RowRange, TableStore, iter_entities, partition_chunks

__all__ = (
    "HEADER",
    "IDS",
    "RECORDS",
    "REPLAYED_HEADER",
    "Intent",
    "KeysInFlight",
    "Recorded",
    "fingerprint",
    "find_recorded",
    "insert_recorded",
    "parse_key",
    "record_op",
    "sweep",
    "sweep_forever",
)

log = logging.getLogger(__name__)

HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
PREFIX: Final = "~idem:"
RECORDS: Final = RowRange(PREFIX, "~idem;")  # ";" follows ":": every record, nothing else
IDS: Final = RowRange("", "~")  # ids are [A-Za-z0-9_-]: they all sort below "~"
SWEEP_EVERY: Final = 3600.0
MIN_KEY: Final = 16
MAX_KEY: Final = 255
# Visible ASCII but the quote and the backslash: a UUID, a ULID, base64url all fit.
_KEY: Final = re.compile(rf"[\x21\x23-\x5b\x5d-\x7e]{{{MIN_KEY},{MAX_KEY}}}")
_NAMESPACE: Final = uuid.UUID("5f0c4b7e-9a51-4d0e-8a55-7a4a1c3b2d10")  # Star Map's ids from keys
KEY_RULE: Final = (
    f"{MIN_KEY} to {MAX_KEY} visible ASCII characters without quotes or backslashes "
    '(a UUID is a good key), bare or as a quoted string: "…"'
)


def parse_key(values: list[str]) -> str | None:
    """The key of a request's ``Idempotency-Key`` headers; None without one.

    ``ValueError`` (the caller's 400) for two of them or one outside ``KEY_RULE``. The draft
    makes the value a Structured Field string (quoted); clients that send it bare are common,
    so both are taken.
    """
    if not values:
        return None
    if len(values) > 1:
        raise ValueError("send one Idempotency-Key header, not several")
    value = values[0].strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not _KEY.fullmatch(value):
        raise ValueError(f"an Idempotency-Key must be {KEY_RULE}")
    return value


def fingerprint(operation: str, target: str, request: Mapping[str, Any]) -> str:
    """What makes two requests the same: operation, target and the validated body, canonical."""
    canonical = orjson.dumps({"operation": operation, "target": target, "request": request},
                             option=orjson.OPT_SORT_KEYS)  # fmt: skip
    return hashlib.sha256(canonical).hexdigest()


@attrs.frozen
class Intent:
    """A keyed write as its actor gets it: the key, the request's fingerprint, the record's life."""

    operation: str  # "create-star", "like", "create-user"
    key: str
    fingerprint: str
    ttl: float

    def derived_id(self) -> str:
        """The id a create makes when its body names none: the same for every retry."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.operation}\n{self.key}"))

    def row_key(self, target: str) -> str:
        digest = hashlib.sha256(f"{self.operation}\n{target}\n{self.key}".encode()).hexdigest()
        return PREFIX + digest


@attrs.frozen
class Recorded:
    """The first answer to a keyed write, as recorded; ``replayed`` when this is a repeat."""

    status: int
    body: bytes
    location: str | None = None
    replayed: bool = False


def record_op(partition: str, target: str, intent: Intent, answer: Recorded, now: float) -> Op:
    """The insert that goes into the write's own batch."""
    return Op(
        "insert",
        {
            "PartitionKey": partition,
            "RowKey": intent.row_key(target),
            LAYOUT_PROPERTY: LAYOUT,
            "operation": intent.operation,
            "fingerprint": intent.fingerprint,
            "status": answer.status,
            "body": answer.body.decode(),
            "location": answer.location or "",
            "expires": now + intent.ttl,
        },
    )


async def insert_recorded(
    store: TableStore, table: str, entity: Mapping[str, Any], record: Op | None
) -> None:
    """Insert ``entity`` and, in the same atomic batch, the record of its key (if any)."""
    if record is None:
        await store.insert(table, entity)  # one request, not a transaction
    else:
        await store.batch(table, [Op("insert", entity), record])


async def find_recorded(
    store: TableStore, table: str, partition: str, target: str, intent: Intent, now: float
) -> Recorded | None:
    """The recorded first answer for this key, replayed; None if there is none (or it expired).

    ``IdempotencyKeyReused`` when the key was recorded for a different request. An
    expired record is deleted (at the version read) so the write can record anew.
    """
    row_key = intent.row_key(target)
    try:
        stored = await store.get(table, partition, row_key)
    except NotFound:
        return None
    record = stored.entity
    if float(record["expires"]) <= now:
        # Gone, or recorded anew meanwhile: then the write's insert meets it.
        with contextlib.suppress(NotFound, PreconditionFailed):
            await store.delete(table, partition, row_key, etag=stored.etag)
        return None
    if record["fingerprint"] != intent.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; send a new key for a new request"
        )
    location = str(record["location"]) or None
    return Recorded(int(record["status"]), str(record["body"]).encode(), location, replayed=True)


async def sweep(store: TableStore, table: str, now: float) -> int:
    """Delete the expired records of ``table`` (at the version read); how many went.

    Every replica may sweep: a chunk another one changed or deleted meanwhile is left
    for the next sweep, never an error.
    """
    expired = [
        row async for row in iter_entities(store, table, rows=RECORDS) if float(row.entity["expires"]) <= now
    ]
    deleted = 0
    for chunk in partition_chunks(expired, lambda row: row.partition_key):
        try:
            await store.batch(table, [Op.delete(r.partition_key, r.row_key, r.etag) for r in chunk])
            deleted += len(chunk)
        except (NotFound, PreconditionFailed, StorageUnavailable) as exc:
            log.debug(
                "%s: %d expired idempotency records left for the next sweep: %s", table, len(chunk), exc
            )
    return deleted


async def sweep_forever(store: TableStore, tables: Sequence[str], *, ttl: float) -> None:
    """Sweep ``tables`` every hour (or every ``ttl``, when shorter), for as long as the service runs."""
    while True:
        await asyncio.sleep(min(ttl, SWEEP_EVERY))
        for table in tables:
            try:
                deleted = await sweep(store, table, time.time())
            except StorageUnavailable as exc:
                log.warning("%s: expired idempotency records not swept this time: %s", table, exc)
                continue
            if deleted:
                log.info("%s: %d expired idempotency records deleted", table, deleted)


class KeysInFlight:
    """The keyed writes this replica is answering now: a second one with the same key is a 409."""

    def __init__(self) -> None:
        self._held: set[tuple[str, ...]] = set()

    @contextlib.contextmanager
    def hold(self, *scope: str) -> Iterator[None]:
        if scope in self._held:
            raise IdempotencyKeyInFlight(
                "a request with this Idempotency-Key is still being answered; retry in a moment"
            )
        self._held.add(scope)
        try:
            yield
        finally:
            self._held.discard(scope)
