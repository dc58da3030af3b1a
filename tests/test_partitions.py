"""How many partitions a table's stars spread over: recorded once per table, on both stores."""

from __future__ import annotations

import asyncio

import pytest

from starmap.control import PARTITION, PARTITIONS, star_partitions
from starmap.errors import NotFound
from starmap.stars import BUCKETS, STAR_PARTITIONS, STARS, Star, StarPartitions, bucket, star_to_entity
from starmap.storage import CONTROL_TABLE, Op, TableStore, partition_chunks

from .conftest import MakeClient
from .legacy_data import write_original


async def recorded(store: TableStore) -> int | None:
    try:
        return int((await store.get(CONTROL_TABLE, PARTITION, PARTITIONS)).entity["count"])
    except NotFound:
        return None


async def test_a_new_table_gets_the_new_count_recorded_for_good(store: TableStore) -> None:
    assert await star_partitions(store) == StarPartitions(STAR_PARTITIONS)
    assert await recorded(store) == STAR_PARTITIONS
    star = Star("s1", 0, 0, "m", 100, 0, 0, 0, 0)
    await store.insert(STARS, star_to_entity(star, StarPartitions(STAR_PARTITIONS).of("s1")))
    # Stars are there now; the record, not the rows, says how they are spread.
    assert await star_partitions(store, proposed=3) == StarPartitions(STAR_PARTITIONS)


async def test_a_table_that_held_stars_before_the_record_keeps_their_32(store: TableStore) -> None:
    star = Star("old", 0, 0, "m", 100, 0, 0, 0, 0)
    await store.insert(STARS, star_to_entity(star, bucket("old")))
    assert await star_partitions(store) == StarPartitions(BUCKETS)
    assert await recorded(store) == BUCKETS


async def test_a_table_of_only_the_original_services_rows_gets_the_new_count(store: TableStore) -> None:
    await write_original(store)  # none of them ours: imports will be written with the new count
    assert await star_partitions(store) == StarPartitions(STAR_PARTITIONS)


async def test_processes_that_decide_at_once_agree_on_the_first_record(store: TableStore) -> None:
    decided = await asyncio.gather(*(star_partitions(store, proposed=n) for n in (2, 4, 8, 16, 50)))
    assert len(set(decided)) == 1
    assert decided[0].count == await recorded(store)


async def test_a_dry_run_decides_without_writing(store: TableStore) -> None:
    assert await star_partitions(store, record=False) == StarPartitions(STAR_PARTITIONS)
    assert await recorded(store) is None


async def test_a_record_edited_past_reading_is_refused_not_guessed(store: TableStore) -> None:
    await store.upsert(CONTROL_TABLE, {"PartitionKey": PARTITION, "RowKey": PARTITIONS, "count": "eight"})
    with pytest.raises(ValueError, match="count 'eight'"):
        await star_partitions(store)


async def test_the_service_keeps_serving_and_liking_stars_of_a_32_partition_table(
    store: TableStore, make_client: MakeClient
) -> None:
    """An upgrade moves no row: stars written before the count was recorded are read and liked in place."""
    old = Star("vega", 0.5, 0.5, "m", 100, 0, 0, 0, 0)
    await store.insert(STARS, star_to_entity(old, bucket("vega")))
    client = await make_client()
    assert (await client.get("/stars/vega")).status == 200
    assert (await client.post("/stars/vega/like", json={})).status == 200
    created = await client.post("/stars", json={"x": 0, "y": 0, "message": "new", "id": "deneb"})
    assert created.status == 201
    assert (await store.get(STARS, bucket("vega"), "vega")).entity["likes"] == 1
    assert (await store.get(STARS, bucket("deneb"), "deneb")).entity["message"] == "new"


async def test_a_new_service_writes_stars_in_the_new_partitions(
    store: TableStore, make_client: MakeClient
) -> None:
    client = await make_client()
    ids = [f"star{i}" for i in range(40)]
    for star_id in ids:
        created = await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "id": star_id})
        assert created.status == 201
    assert (await client.post("/stars/star7/like", json={})).status == 200
    partition = StarPartitions(STAR_PARTITIONS).of
    assert (await store.get(STARS, partition("star7"), "star7")).entity["likes"] == 1
    used = {partition(star_id) for star_id in ids}
    assert used == {f"b{n:02d}" for n in range(STAR_PARTITIONS)}
    rows = {s.partition_key for s in (await store.query(STARS, None, limit=1000)).items}
    assert rows == used  # every row where the count says, none elsewhere


def ids_apart(count: int) -> list[str]:
    """Ids whose 32-bucket is not their partition in a table of ``count``."""
    partitions = StarPartitions(count)
    return [sid for sid in (f"old{i}" for i in range(200)) if bucket(sid) != partitions.of(sid)]


async def test_stars_an_older_replica_put_at_their_32_bucket_are_read_liked_and_deleted(
    store: TableStore, make_client: MakeClient
) -> None:
    """During a rollout the old revision still runs beside the new one, which recorded 8 for a
    table without stars: stars the old one makes land at their 32-bucket, and still work."""
    assert await star_partitions(store) == StarPartitions(STAR_PARTITIONS)
    before, after = ids_apart(STAR_PARTITIONS)[:2]
    await store.insert(STARS, star_to_entity(Star(before, 0.1, 0.1, "m", 100, 0, 0, 0, 0), bucket(before)))
    client = await make_client()  # loads `before`; `after` comes once it runs
    await store.insert(STARS, star_to_entity(Star(after, 0.2, 0.2, "m", 100, 0, 0, 0, 0), bucket(after)))
    for sid in (before, after):
        assert (await client.get(f"/stars/{sid}")).status == 200
        liked = await client.post(f"/stars/{sid}/like", json={})
        assert liked.status == 200, await liked.text()
        assert (await store.get(STARS, bucket(sid), sid)).entity["likes"] == 1  # in place
        assert (await client.delete(f"/stars/{sid}")).status == 200
        with pytest.raises(NotFound):
            await store.get(STARS, bucket(sid), sid)
    assert (await client.get(f"/stars/{ids_apart(STAR_PARTITIONS)[2]}")).status == 404


async def test_deciding_stops_reading_the_table_at_the_first_star(store: TableStore) -> None:
    """A table of stars from before the record: the first page says so, and the page read ahead
    is not left running."""
    stars = [Star(f"s{i:04d}", 0, 0, "m", 100, 0, 0, 0, 0) for i in range(1001)]  # two pages
    for chunk in partition_chunks(stars, lambda star: bucket(star.id)):
        await store.batch(STARS, [Op("insert", star_to_entity(s, bucket(s.id))) for s in chunk])
    assert await star_partitions(store, record=False) == StarPartitions(BUCKETS)
    await asyncio.sleep(0)
    reads = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith(".query")]  # type: ignore[union-attr]
    assert all(t.done() for t in reads), reads
