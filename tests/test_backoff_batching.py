"""The shared retry policy and the shared batch-draining helper."""

from __future__ import annotations

import asyncio
import itertools
import queue

import pytest

from starmap.backoff import Backoff, retry
from starmap.batching import take_batch
from starmap.errors import StorageUnavailable


def test_two_schedules_after_the_same_outage_differ() -> None:
    """Two replicas that lost the store together do not come back in lockstep."""
    policy = Backoff(base=0.25, cap=5.0)
    first, second = (list(itertools.islice(policy.delays(), 6)) for _ in range(2))
    assert first != second
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_delays_double_up_to_the_cap_within_the_jitter() -> None:
    policy = Backoff(base=0.1, cap=0.8, jitter=0.5)
    delays = list(itertools.islice(policy.delays(), 8))
    steps = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8, 0.8]
    for delay, step in zip(delays, steps, strict=True):
        assert step * 0.5 <= delay <= step * 1.5


async def test_retry_tries_again_through_an_outage_then_gives_up() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise StorageUnavailable("down")
        return "up"

    assert await retry(flaky, backoff=Backoff(base=0.001, cap=0.002), attempts=5) == "up"
    assert calls == 3

    async def down() -> str:
        raise StorageUnavailable("down for good")

    with pytest.raises(StorageUnavailable):
        await retry(down, backoff=Backoff(base=0.001, cap=0.002), attempts=3)


def test_take_batch_takes_what_is_queued_up_to_the_limit_and_stops_at_the_stop_item() -> None:
    waiting: asyncio.Queue[int] = asyncio.Queue()
    for i in range(1, 10):
        waiting.put_nowait(i)
    assert take_batch(0, waiting.get_nowait, 4) == ([0, 1, 2, 3], False)
    assert take_batch(waiting.get_nowait(), waiting.get_nowait, 100) == ([4, 5, 6, 7, 8, 9], False)
    threads: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    for item in (1, 2, None, 3):
        threads.put(item)
    first: int | None = 0
    assert take_batch(first, threads.get_nowait, 100, stop=None) == ([0, 1, 2], True)
    assert threads.get_nowait() == 3  # what came after the stop is left queued
