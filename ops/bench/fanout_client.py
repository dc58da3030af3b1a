"""One process of the fan-out load client: ``count`` raw SSE subscribers from one source address.

    python ops/bench/fanout_client.py HOST:PORT COUNT SOURCE_IP

A process may hold 20,000 open files here, so 40k streams need several of these; each
binds its own loopback source address (127.0.0.x) so the ephemeral ports never run out.
It prints ``ready N`` once every stream has its ``retry:`` line, then waits for one event
whose message carries its send time (``t=<epoch>``) and prints one JSON line: how many
streams got it and the delays (send → receive) in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import Callable

MARKER = re.compile(rb'"message":"t=(\d+\.\d+)"')


class Subscriber(asyncio.Protocol):
    def __init__(self, ready: asyncio.Future[None], got: asyncio.Future[float]) -> None:
        self.ready, self.got, self.buffer = ready, got, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"GET /events/stars/stream HTTP/1.1\r\nHost: bench\r\n\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.ready.done() and b"retry:" in data:
            self.ready.set_result(None)
        if not self.got.done():
            self.buffer = (self.buffer + data)[-4096:]
            found = MARKER.search(self.buffer)
            if found:
                self.got.set_result(time.time() - float(found.group(1)))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before its retry: line"))


def _factory(ready: asyncio.Future[None], got: asyncio.Future[float]) -> Callable[[], Subscriber]:
    def make() -> Subscriber:
        return Subscriber(ready, got)

    return make


async def main(target: str, count: int, source: str) -> None:
    host, port = target.split(":")
    loop = asyncio.get_running_loop()
    subscribers = []
    for start in range(0, count, 500):
        batch = []
        for _ in range(min(500, count - start)):
            ready: asyncio.Future[None] = loop.create_future()
            got: asyncio.Future[float] = loop.create_future()
            batch.append(
                loop.create_connection(_factory(ready, got), host, int(port), local_addr=(source, 0))
            )
            subscribers.append((ready, got))
        await asyncio.gather(*batch)
    results = await asyncio.gather(*(ready for ready, _ in subscribers), return_exceptions=True)
    opened = sum(r is None for r in results)
    print(f"ready {opened}", flush=True)
    gots = [got for _, got in subscribers]
    done, _ = await asyncio.wait(gots, timeout=30)
    delays = sorted(g.result() * 1000 for g in done)
    print(json.dumps({
        "source": source, "streams": opened, "received": len(delays),
        "max_ms": round(delays[-1], 1) if delays else None,
        "p50_ms": round(delays[len(delays) // 2], 1) if delays else None,
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
