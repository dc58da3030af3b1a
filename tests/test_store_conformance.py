"""One conformance suite for every table store: SQLite and Azure Tables (on real Azurite).

Each test runs once per backend (see the ``backend`` fixture); none is skipped.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from starmap.errors import AlreadyExists, NotFound, PreconditionFailed
from starmap.storage import Op, RowRange, TableStore, iter_entities, iter_pages

T = "Stars"


def entity(pk: str, rk: str, **props: object) -> dict[str, object]:
    return {"PartitionKey": pk, "RowKey": rk, **props}


async def test_get_of_a_missing_entity_is_not_found(store: TableStore) -> None:
    with pytest.raises(NotFound):
        await store.get(T, "p", "nothing")


async def test_insert_then_get_round_trips_every_value_type(store: TableStore) -> None:
    props = {"s": "héllo ✨", "i": 42, "big": 2**40, "f": 0.25, "whole": 100.0, "yes": True, "no": False}
    etag = await store.insert(T, entity("p", "r", **props))
    got = await store.get(T, "p", "r")
    assert got.etag == etag
    assert got.entity == entity("p", "r", **props)
    assert type(got.entity["yes"]) is bool
    assert type(got.entity["big"]) is int


@pytest.mark.parametrize(
    "props",
    [
        {"tiny": 5e-324, "huge": 1.7976931348623157e308, "third": 1 / 3, "zero": -0.0, "whole": 3.0,
         "emoji": "✨\u2028", "control": "\x00\x1f\x7f", "quoted": 'say "hi"\n\tthen\\go'},
        {"word": "null", "quoted": 'say "null"', "third": 1 / 3},  # a text that reads null
    ],
    ids=["doubles-and-texts", "null-texts"],
)  # fmt: skip
async def test_texts_and_doubles_round_trip_exactly(store: TableStore, props: dict[str, object]) -> None:
    await store.insert(T, entity("p", "r", **props))
    got = (await store.get(T, "p", "r")).entity
    assert got == entity("p", "r", **props)
    assert [type(got[k]) for k in props] == [type(v) for v in props.values()]


async def test_non_finite_doubles_round_trip(store: TableStore) -> None:
    """Rows edited by hand hold NaN and infinities; Azure stores them, so SQLite must too."""
    await store.insert(T, entity("p", "r", nan=math.nan, up=math.inf, down=-math.inf))
    got = (await store.get(T, "p", "r")).entity
    assert math.isnan(got["nan"]) and got["up"] == math.inf and got["down"] == -math.inf


async def test_a_table_that_does_not_exist_is_not_found(store: TableStore) -> None:
    with pytest.raises(NotFound):
        await store.query("Missing")
    with pytest.raises(NotFound):
        await store.get("Missing", "p", "r")


async def test_insert_of_an_existing_key_is_refused(store: TableStore) -> None:
    await store.insert(T, entity("p", "r", v=1))
    with pytest.raises(AlreadyExists):
        await store.insert(T, entity("p", "r", v=2))
    assert (await store.get(T, "p", "r")).entity["v"] == 1


async def test_update_needs_the_current_etag(store: TableStore) -> None:
    first = await store.insert(T, entity("p", "r", v=1))
    second = await store.update(T, entity("p", "r", v=2), first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        await store.update(T, entity("p", "r", v=3), first)
    got = await store.get(T, "p", "r")
    assert (got.entity["v"], got.etag) == (2, second)


async def test_update_replaces_the_whole_entity(store: TableStore) -> None:
    etag = await store.insert(T, entity("p", "r", a=1, b=2))
    await store.update(T, entity("p", "r", a=5), etag)
    assert (await store.get(T, "p", "r")).entity == entity("p", "r", a=5)


async def test_update_of_a_missing_entity_is_not_found(store: TableStore) -> None:
    etag = await store.insert(T, entity("p", "gone"))
    await store.delete(T, "p", "gone")
    with pytest.raises(NotFound):
        await store.update(T, entity("p", "gone", v=1), etag)


async def test_two_writers_with_the_same_etag_exactly_one_wins(store: TableStore) -> None:
    etag = await store.insert(T, entity("p", "r", likes=0))
    results = await asyncio.gather(
        *(store.update(T, entity("p", "r", likes=n), etag) for n in (1, 2)), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, str)]
    losses = [r for r in results if isinstance(r, PreconditionFailed)]
    assert (len(wins), len(losses)) == (1, 1), results
    got = await store.get(T, "p", "r")
    assert got.etag == wins[0]
    assert got.entity["likes"] in (1, 2)


async def test_upsert_inserts_then_replaces_unconditionally(store: TableStore) -> None:
    first = await store.upsert(T, entity("p", "r", v=1, old=True))
    second = await store.upsert(T, entity("p", "r", v=2))
    assert first != second
    assert (await store.get(T, "p", "r")).entity == entity("p", "r", v=2)


async def test_delete_is_idempotent_and_honours_an_etag(store: TableStore) -> None:
    first = await store.insert(T, entity("p", "r"))
    await store.update(T, entity("p", "r", v=1), first)
    with pytest.raises(PreconditionFailed):
        await store.delete(T, "p", "r", etag=first)
    await store.get(T, "p", "r")  # still there
    await store.delete(T, "p", "r")
    await store.delete(T, "p", "r")  # gone already: no error
    with pytest.raises(NotFound):
        await store.get(T, "p", "r")


async def test_batch_applies_every_operation(store: TableStore) -> None:
    old = await store.insert(T, entity("p", "upd", v=0))
    await store.insert(T, entity("p", "del"))
    etags = await store.batch(
        T,
        [
            Op("insert", entity("p", "new", v=1)),
            Op("update", entity("p", "upd", v=1), old),
            Op("upsert", entity("p", "ups", v=1)),
            Op.delete("p", "del"),
        ],
    )
    assert [e is None for e in etags] == [False, False, False, True]
    rows = {s.row_key: s for s in [s async for s in iter_entities(store, T, "p")]}
    assert sorted(rows) == ["new", "upd", "ups"]
    assert rows["upd"].etag == etags[1]
    assert all(s.entity["v"] == 1 for s in rows.values())


@pytest.mark.parametrize(
    ("failing", "error"),
    [
        (Op("insert", entity("p", "taken", v=9)), AlreadyExists),
        (Op("update", entity("p", "taken", v=9), 'W/"stale"'), PreconditionFailed),
        (Op.delete("p", "missing"), NotFound),
    ],
    ids=["insert-existing", "update-stale-etag", "delete-missing"],
)
async def test_batch_is_all_or_nothing(store: TableStore, failing: Op, error: type[Exception]) -> None:
    await store.insert(T, entity("p", "taken", v=0))
    ops = [Op("insert", entity("p", f"n{i}", v=1)) for i in range(3)]
    with pytest.raises(error):
        await store.batch(T, [*ops[:2], failing, ops[2]])
    rows = [s.entity async for s in iter_entities(store, T, "p")]
    assert rows == [entity("p", "taken", v=0)]


@pytest.mark.parametrize(
    "ops",
    [
        [],
        [Op("insert", entity("p", "a")), Op("insert", entity("q", "b"))],
        [Op("insert", entity("p", "a")), Op("upsert", entity("p", "a"))],
        [Op("insert", entity("p", str(i))) for i in range(101)],
        [Op("update", entity("p", "a"))],
    ],
    ids=["empty", "two-partitions", "same-key-twice", "over-100", "update-without-etag"],
)
async def test_batches_azure_would_refuse_are_refused_first(store: TableStore, ops: list[Op]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        await store.batch(T, ops)


async def test_query_follows_continuations_past_1000_entities(store: TableStore) -> None:
    for start in range(0, 1050, 100):
        await store.batch(
            T, [Op("insert", entity("big", f"{i:05d}", i=i)) for i in range(start, min(start + 100, 1050))]
        )
    await store.insert(T, entity("other", "x"))

    first = await store.query(T, "big", limit=1000)
    assert len(first.items) <= 1000
    assert first.continuation is not None
    seen = [s.entity["i"] async for s in iter_entities(store, T, "big")]
    assert seen == list(range(1050))
    everything = [s.row_key async for s in iter_entities(store, T, page_size=300)]
    assert len(everything) == 1051
    assert await store.count(T) == 1051


async def test_pages_hand_out_every_entity_once_in_order_a_page_at_a_time(store: TableStore) -> None:
    await store.batch(T, [Op("insert", entity("p", f"{i:02d}", i=i)) for i in range(10)])
    pages = [[s.row_key for s in page] async for page in iter_pages(store, T, "p", page_size=4)]
    assert pages == [["00", "01", "02", "03"], ["04", "05", "06", "07"], ["08", "09"]]
    assert [[s.entity["i"] for s in page] async for page in iter_pages(store, T, "p")] == [list(range(10))]


async def test_an_iteration_stopped_early_leaves_no_read_behind(store: TableStore) -> None:
    """iter_entities and iter_pages read the next page ahead; a caller that stops early has it
    cancelled."""
    await store.batch(T, [Op("insert", entity("p", f"{i:02d}")) for i in range(10)])
    rows = iter_entities(store, T, "p", page_size=3)
    assert [(await anext(rows)).row_key for _ in range(4)] == ["00", "01", "02", "03"]
    await rows.aclose()  # in the second page: the third is being read
    pages = iter_pages(store, T, "p", page_size=3)
    assert [s.row_key for s in await anext(pages)] == ["00", "01", "02"]
    await pages.aclose()  # the second page is being read
    await asyncio.sleep(0)
    reads = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith(".query")]  # type: ignore[union-attr]
    assert all(t.done() for t in reads), reads


async def test_a_row_range_keeps_the_row_keys_inside_it_across_partitions_and_pages(
    store: TableStore,
) -> None:
    for pk in ("a", "b"):
        await store.batch(
            T, [Op("insert", entity(pk, rk)) for rk in ("0", "abc", "zz", "~idem:1", "~idem:2", "~x")]
        )
    below = RowRange("", "~")
    assert [(s.partition_key, s.row_key) async for s in iter_entities(store, T, rows=below, page_size=2)] == [
        (pk, rk) for pk in ("a", "b") for rk in ("0", "abc", "zz")
    ]
    records = RowRange("~idem:", "~idem;")
    assert [s.row_key async for s in iter_entities(store, T, "b", rows=records)] == ["~idem:1", "~idem:2"]


@pytest.mark.parametrize(
    "key",
    ["o'brien", "' or PartitionKey ne '", "a ' or 1 eq 1 or '", "星 map ✨", 'quote"s', "emoji 🌟"],
    ids=["apostrophe", "filter-injection", "or-injection", "unicode", "double-quote", "emoji"],
)
async def test_keys_with_quotes_and_unicode_round_trip(store: TableStore, key: str) -> None:
    await store.insert(T, entity("plain", "decoy"))
    await store.insert(T, entity(key, key, v=key))
    assert (await store.get(T, key, key)).entity["v"] == key
    rows = [s.entity async for s in iter_entities(store, T, key)]
    assert rows == [entity(key, key, v=key)]


@pytest.mark.parametrize("key", ["a/b", "a\\b", "a#b", "a?b", "tab\there", "nul\x00"])
async def test_keys_azure_refuses_are_refused(store: TableStore, key: str) -> None:
    with pytest.raises(ValueError, match="refuses"):
        await store.insert(T, entity("p", key))


async def test_values_of_other_types_are_refused(store: TableStore) -> None:
    with pytest.raises(TypeError):
        await store.insert(T, entity("p", "r", v=[1, 2]))
    with pytest.raises(TypeError):
        await store.insert(T, entity("p", "r", v=None))


async def test_ensure_tables_is_idempotent_and_ping_answers(store: TableStore) -> None:
    await store.ensure_tables(["Stars", "Users"])
    await store.ping()


async def test_concurrent_writes_in_one_partition_share_round_trips_and_keep_their_own_outcomes(
    store: TableStore,
) -> None:
    """Azure coalesces them into transactions, SQLite into commits: a failing write is its own."""
    etags = [await store.insert(T, entity("p", f"r{i:02d}", v=0)) for i in range(40)]
    await store.insert(T, entity("p", "taken"))
    stale = etags[7]
    await store.update(T, entity("p", "r07", v=-1), stale)  # r07 moves on: `stale` is old now
    sent = store.write_requests
    outcomes = await asyncio.gather(
        *(store.update(T, entity("p", f"r{i:02d}", v=i), etags[i]) for i in range(40)),
        store.insert(T, entity("p", "taken", v=1)),  # exists
        store.update(T, entity("p", "missing", v=1), stale),  # never was
        store.batch(
            T, [Op("upsert", entity("p", "b1", v=1)), Op("insert", entity("p", "r39"))]
        ),  # r39 exists
        store.batch(T, [Op("upsert", entity("p", "b2", v=2)), Op("upsert", entity("p", "b3", v=3))]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[7], PreconditionFailed)
    assert [type(o) for o in outcomes[40:43]] == [AlreadyExists, NotFound, AlreadyExists]
    assert all(isinstance(o, str) for i, o in enumerate(outcomes[:40]) if i != 7)
    assert isinstance(outcomes[43], list) and len(outcomes[43]) == 2 and None not in outcomes[43]
    assert store.write_requests - sent < 10, "44 concurrent writes, each its own round trip"
    rows = {s.row_key: s async for s in iter_entities(store, T, "p")}
    assert {rk: s.entity.get("v") for rk, s in rows.items()} == {
        **{f"r{i:02d}": i for i in range(40)}, "r07": -1, "taken": None, "b2": 2, "b3": 3,
    }  # fmt: skip
    # Every ETag handed back is the row's own: a conditional write with it succeeds.
    assert all(rows[f"r{i:02d}"].etag == outcomes[i] for i in range(40) if i != 7)
    await store.update(T, entity("p", "r00", v=100), str(outcomes[0]))


async def test_concurrent_writes_of_one_row_apply_in_the_order_they_were_made(store: TableStore) -> None:
    first = await store.insert(T, entity("p", "r", v=0))
    outcomes = await asyncio.gather(
        store.update(T, entity("p", "r", v=1), first),
        store.update(T, entity("p", "r", v=2), first),  # made second: the first has moved the ETag
        *(store.upsert(T, entity("p", "r", v=3 + i)) for i in range(5)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], str) and isinstance(outcomes[1], PreconditionFailed)
    assert (await store.get(T, "p", "r")).entity["v"] == 7


async def test_more_concurrent_operations_than_a_transaction_holds_all_land(store: TableStore) -> None:
    await asyncio.gather(
        *(store.batch(T, [Op("insert", entity("p", f"g{g}-{i:02d}")) for i in range(40)]) for g in range(5))
    )
    assert len([s async for s in iter_entities(store, T, "p")]) == 200
