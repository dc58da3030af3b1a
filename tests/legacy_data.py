"""The original service's layout, written by the tests themselves (``../shared/LEGACY.md``).

``write_original`` puts 50 stars and 5 users into a store the way the original FastAPI
service (and people with Azure Storage Explorer) left them, dirty cases included, and
returns what an import must make of them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any, Final

import attrs

from starmap.storage import MAX_BATCH, Op, TableStore

CLEAN_STARS: Final = 40
BASE_TIME: Final = 1_700_000_000.0  # 2023-11-14


@attrs.frozen
class Original:
    """What was written, and what a default import (no flags) must do with it."""

    stars: list[dict[str, Any]]
    users: list[dict[str, Any]]
    relations: list[dict[str, Any]]
    importable_stars: dict[str, dict[str, Any]]  # id → the row that must be imported
    skipped_stars: dict[str, str]  # row key → a word of the reason
    importable_users: set[str]
    skipped_users: dict[str, str]


def _star(row: str, month: str = "202311", **props: Any) -> dict[str, Any]:
    return {"PartitionKey": f"STAR_{month}", "RowKey": row, **props}


def _clean(i: int) -> dict[str, Any]:
    created = BASE_TIME + i * 3600
    return _star(
        str(uuid.uuid4()),
        f"2023{11 + i % 2:02d}",
        X=round(-0.9 + i * 0.045, 4),
        Y=round(0.9 - i * 0.04, 4),
        Message=f"star number {i} ✨",
        Brightness=float(20 + i * 2),
        LastLiked=created + 60,
        CreatedAt=created,
    )


def original_layout() -> Original:
    clean = [_clean(i) for i in range(CLEAN_STARS)]
    twin = str(uuid.uuid4())
    good: dict[str, Any] = {
        "X": 0.1,
        "Y": 0.1,
        "Message": "ok",
        "Brightness": 50.0,
        "LastLiked": BASE_TIME,
        "CreatedAt": BASE_TIME,
    }
    importable = [
        _star(str(uuid.uuid4()), **{**good, "Brightness": math.nan}),  # NaN brightness: the minimum
        _star(str(uuid.uuid4()), **{**good, "X": 0, "Y": "0.25"}),  # Int32 and text where Doubles belong
        _star(str(uuid.uuid4()), **{k: v for k, v in good.items() if k != "CreatedAt"}),  # month start
        _star("debug-1a2b3c4d", **good),  # the original's debug stars
        {"PartitionKey": "by-hand", "RowKey": str(uuid.uuid4()), **good},  # added by an admin
        _star(twin, "202311", **{**good, "LastLiked": BASE_TIME + 10}),  # liked later: this one wins
    ]
    skipped = {
        twin: "same id",  # the same RowKey, an earlier month, liked earlier
        "no-x": "X is missing",
        "far-out": "outside [-1, 1]",
        "long-message": "280",
        "bad id!": "the id",
    }
    dirty = [
        _star(twin, "202310", **good),
        _star("no-x", **{k: v for k, v in good.items() if k != "X"}),
        _star("far-out", **{**good, "X": 1.5}),
        _star("long-message", **{**good, "Message": "m" * 300}),
        _star("bad id!", **good),
    ]
    stars = clean + importable + dirty
    assert len(stars) == 51  # 50 distinct ids: the twin is in two partitions
    importable_stars = {str(s["RowKey"]): s for s in clean + importable}
    users = [
        _user("u-alice", "Alice", "alice@example.com", "2023-01-01T10:00:00"),
        _user("u-alice2", "Alice Two", " ALICE@Example.com", "2023-06-01T10:00:00.123456"),  # newer: loses
        _user("u-nomail", "Nomail", "not-an-address", "2023-02-01T10:00:00"),
        _user("u-bob", "Bob", "bob@example.com", "2023-03-01T10:00:00"),
        {"PartitionKey": "USER", "RowKey": "u-carol", "Username": "Carol", "Email": "carol@example.com"},
    ]
    relations = [{"PartitionKey": "u-alice", "RowKey": "by-hand", "StarId": clean[0]["RowKey"]}]
    return Original(
        stars=stars,
        users=users,
        relations=relations,
        importable_stars=importable_stars,
        skipped_stars=skipped,
        importable_users={"u-alice", "u-bob", "u-carol"},
        skipped_users={"u-alice2": "held by the older user", "u-nomail": "not valid"},
    )


def _user(row: str, name: str, email: str, created: str) -> dict[str, Any]:
    return {"PartitionKey": "USER", "RowKey": row, "Username": name, "Email": email, "CreatedAt": created}


async def write_rows(store: TableStore, table: str, rows: Iterable[dict[str, Any]]) -> None:
    """Upsert rows in batches per partition (as fast as the store allows)."""
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_partition.setdefault(row["PartitionKey"], []).append(row)
    for group in by_partition.values():
        for i in range(0, len(group), MAX_BATCH):
            await store.batch(table, [Op("upsert", r) for r in group[i : i + MAX_BATCH]])


async def write_original(store: TableStore) -> Original:
    """The 50 stars, 5 users and one hand-made relation row, as the original service's tables hold them."""
    original = original_layout()
    await write_rows(store, "Stars", original.stars)
    await write_rows(store, "Users", original.users)
    await write_rows(store, "UserStars", original.relations)
    return original


def many_stars(count: int) -> list[dict[str, Any]]:
    """``count`` clean stars in the original layout (for long imports)."""
    return [_clean(i % 40) | {"RowKey": str(uuid.uuid4())} for i in range(count)]
