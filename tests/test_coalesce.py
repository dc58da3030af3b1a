"""The partition writer's own logic, with a recording ``send`` (the stores' behaviour is in
``test_store_conformance``, on real Azurite and SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from starmap.errors import PreconditionFailed, StorageUnavailable
from starmap.storage import Op
from starmap.storage.coalesce import PartitionWriter, TransactionFailed


def op(pk: str, rk: str) -> Op:
    return Op("upsert", {"PartitionKey": pk, "RowKey": rk})


class Recorder:
    """Records each request; rows in ``failing`` fail it (at their index unless ``unplaced``).

    ``held``: every request stays out, unanswered, until ``gate`` is set.
    """

    def __init__(self, *, unplaced: bool = False, held: bool = False) -> None:
        self.sent: list[list[str]] = []
        self.failing: set[str] = set()
        self.unplaced = unplaced
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.down = False

    async def send(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        rows = [f"{op.entity['PartitionKey']}/{op.entity['RowKey']}" for op in ops]
        self.sent.append(rows)
        await self.gate.wait()
        if self.down:
            raise StorageUnavailable("down")
        for i, row in enumerate(rows):
            if row in self.failing:
                raise TransactionFailed(None if self.unplaced else i, PreconditionFailed(row))
        return [f"etag:{row}" for row in rows]


async def test_writes_that_wait_together_go_as_one_transaction_per_partition() -> None:
    recorder = Recorder()
    writer = PartitionWriter(recorder.send, writers=8, timeout=5)
    results = await asyncio.gather(*(writer.write("T", [op(f"p{i % 2}", f"r{i}")]) for i in range(10)))
    assert results == [[f"etag:p{i % 2}/r{i}"] for i in range(10)]
    assert sorted(recorder.sent) == [
        [f"p0/r{i}" for i in range(0, 10, 2)],
        [f"p1/r{i}" for i in range(1, 10, 2)],
    ]
    assert writer.requests == 2


async def test_at_most_writers_transactions_are_out_and_the_next_gathers_meanwhile() -> None:
    recorder = Recorder(held=True)
    writer = PartitionWriter(recorder.send, writers=1, timeout=5)
    first = asyncio.ensure_future(writer.write("T", [op("a", "1")]))
    await asyncio.sleep(0.01)
    rest = [asyncio.ensure_future(writer.write("T", [op(pk, str(i))])) for i in range(6) for pk in "ab"]
    await asyncio.sleep(0.01)
    assert recorder.sent == [["a/1"]]  # one writer: the others wait, gathering
    recorder.gate.set()
    await asyncio.gather(first, *rest)
    # b waited since before a's transaction came back: b goes first, then a's gathered writes.
    assert recorder.sent[1:] == [[f"b/{i}" for i in range(6)], [f"a/{i}" for i in range(6)]]


async def test_a_failure_the_store_places_fails_that_write_alone() -> None:
    recorder = Recorder()
    recorder.failing = {"p/r3"}
    writer = PartitionWriter(recorder.send, writers=1, timeout=5)
    outcomes = await asyncio.gather(
        *(writer.write("T", [op("p", f"r{i}"), op("p", f"s{i}")]) for i in range(6)), return_exceptions=True
    )
    assert isinstance(outcomes[3], PreconditionFailed)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [
        [f"etag:p/r{i}", f"etag:p/s{i}"] for i in (0, 1, 2, 4, 5)
    ]
    assert len(recorder.sent) == 2 and "p/r3" not in recorder.sent[1]


async def test_a_failure_the_store_does_not_place_is_found_by_sending_each_write_alone() -> None:
    recorder = Recorder(unplaced=True)
    recorder.failing = {"p/r3"}
    writer = PartitionWriter(recorder.send, writers=1, timeout=5)
    outcomes = await asyncio.gather(
        *(writer.write("T", [op("p", f"r{i}")]) for i in range(5)), return_exceptions=True
    )
    assert isinstance(outcomes[3], PreconditionFailed)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [[f"etag:p/r{i}"] for i in (0, 1, 2, 4)]
    assert recorder.sent == [[f"p/r{i}" for i in range(5)], *([f"p/r{i}"] for i in range(5))]


async def test_an_unknown_outcome_reaches_every_write_of_the_transaction() -> None:
    recorder = Recorder()
    recorder.down = True
    writer = PartitionWriter(recorder.send, writers=1, timeout=5)
    outcomes = await asyncio.gather(
        *(writer.write("T", [op("p", f"r{i}")]) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert len(recorder.sent) == 1


async def test_a_write_whose_caller_gave_up_while_it_waited_is_never_sent() -> None:
    recorder = Recorder(held=True)
    writer = PartitionWriter(recorder.send, writers=1, timeout=0.2)
    blocked = asyncio.ensure_future(writer.write("T", [op("p", "first")]))
    await asyncio.sleep(0.01)
    with pytest.raises(StorageUnavailable, match="no answer within"):
        await writer.write("T", [op("p", "late")])
    cancelled = asyncio.ensure_future(writer.write("T", [op("p", "cancelled")]))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    kept = asyncio.ensure_future(writer.write("T", [op("p", "kept")]))
    await asyncio.sleep(0.01)
    recorder.gate.set()
    with pytest.raises(StorageUnavailable):  # the first timed out too, in flight: its outcome unknown
        await blocked
    assert await kept == ["etag:p/kept"]
    assert recorder.sent == [["p/first"], ["p/kept"]]
    await writer.close()


async def test_one_row_twice_and_more_than_100_operations_wait_for_the_next_transaction() -> None:
    recorder = Recorder()
    writer = PartitionWriter(recorder.send, writers=1, timeout=5)
    big = [op("p", f"big{i}") for i in range(60)]
    await asyncio.gather(
        writer.write("T", [op("p", "x")]),
        writer.write("T", [op("p", "x")]),
        writer.write("T", [op("p", "y")]),
        writer.write("T", big),
        writer.write("T", [op("p", f"more{i}") for i in range(50)]),
    )
    assert [len(rows) for rows in recorder.sent] == [1, 62, 50]
    assert recorder.sent[0] == ["p/x"] and recorder.sent[1][:2] == ["p/x", "p/y"]


async def test_too_few_operations_for_a_transaction_go_each_on_its_own_at_once() -> None:
    recorder = Recorder(held=True)
    writer = PartitionWriter(recorder.send, writers=1, timeout=5, min_transaction=8)
    first = asyncio.ensure_future(writer.write("T", [op("p", "first")]))
    await asyncio.sleep(0.01)
    few = [asyncio.ensure_future(writer.write("T", [op("p", f"few{i}")])) for i in range(3)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.gather(first, *few)
    many = [asyncio.ensure_future(writer.write("T", [op("p", f"many{i}")])) for i in range(8)]
    await asyncio.gather(*many)
    assert recorder.sent == [
        ["p/first"],
        ["p/few0"],
        ["p/few1"],
        ["p/few2"],
        [f"p/many{i}" for i in range(8)],
    ]
    assert writer.requests == 5


async def test_writes_sent_each_on_its_own_are_out_together() -> None:
    recorder = Recorder(held=True)
    writer = PartitionWriter(recorder.send, writers=1, timeout=5, min_transaction=8)
    writes = [asyncio.ensure_future(writer.write("T", [op("p", f"r{i}")])) for i in range(3)]
    await asyncio.sleep(0.01)
    assert recorder.sent == [["p/r0"], ["p/r1"], ["p/r2"]]  # all three out before any answer
    recorder.gate.set()
    assert await asyncio.gather(*writes) == [[f"etag:p/r{i}"] for i in range(3)]


async def test_a_partition_is_flushed_at_most_once_per_spacing_and_an_idle_one_at_once() -> None:
    recorder = Recorder()
    times: list[float] = []
    clock = asyncio.get_running_loop().time

    async def send(table: str, ops: Sequence[Op]) -> list[str | None]:
        times.append(clock())
        return await recorder.send(table, ops)

    writer = PartitionWriter(send, writers=8, timeout=5, spacing=0.2)
    started = clock()
    await writer.write("T", [op("a", "0")])
    assert times[0] - started < 0.05  # an idle partition's write goes at once
    # Arriving one by one within the spacing: they gather, and go as one transaction after it.
    later = []
    for i in range(1, 4):
        later.append(asyncio.ensure_future(writer.write("T", [op("a", str(i))])))
        await asyncio.sleep(0.02)
    other = await writer.write("T", [op("b", "0")])  # another partition is not held by a's spacing
    assert other == ["etag:b/0"] and clock() - started < 0.15
    await asyncio.gather(*later)
    assert recorder.sent == [["a/0"], ["b/0"], ["a/1", "a/2", "a/3"]]
    assert times[2] - times[0] >= 0.2
    await asyncio.sleep(0.25)  # idle again for a whole spacing: the next write goes at once
    before = clock()
    await writer.write("T", [op("a", "4")])
    assert times[-1] - before < 0.05
