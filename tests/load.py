"""Load for the fault tests: like storms that count what was acknowledged."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Sequence

import aiohttp


async def create_star(url: str, star: str) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"x": 0, "y": 0, "message": f"star {star}", "id": star}
        async with session.post(f"{url}/stars", json=body) as answer:
            assert answer.status == 201, await answer.text()


async def likes_of(url: str, star: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stars/{star}") as answer:
        assert answer.status == 200, await answer.text()
        return int((await answer.json())["likes"])


class LikeStorm:
    """``concurrency`` workers liking ``stars`` round robin through ``urls`` until stopped.

    ``acked`` counts the 200s per star (a like the service promised is durable);
    ``statuses`` every answer; ``failed`` requests that got no answer at all.
    """

    def __init__(self, urls: Sequence[str], stars: Sequence[str], *, concurrency: int = 32) -> None:
        self.urls = list(urls)
        self.stars = list(stars)
        self.concurrency = concurrency
        self.acked: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.retry_after_seen = 0
        self.failed = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._turn = itertools.count()

    @property
    def total_acked(self) -> int:
        return sum(self.acked.values())

    async def __aenter__(self) -> LikeStorm:
        timeout = aiohttp.ClientTimeout(total=15)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
        self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.concurrency)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop sending and wait for every answer still due."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _worker(self) -> None:
        assert self._session is not None
        while not self._stop.is_set():
            n = next(self._turn)
            url, star = self.urls[n % len(self.urls)], self.stars[n % len(self.stars)]
            try:
                async with self._session.post(f"{url}/stars/{star}/like", json={}) as answer:
                    await answer.read()
                    self.statuses[answer.status] += 1
                    if answer.status == 200:
                        self.acked[star] += 1
                    elif answer.status == 503 and answer.headers.get("Retry-After"):
                        self.retry_after_seen += 1
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1  # no answer: not acknowledged
                await asyncio.sleep(0.01)
