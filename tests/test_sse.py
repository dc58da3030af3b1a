"""Live events over real HTTP: order, resume, resync, slow consumers, limits, shutdown."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import struct
import time
import urllib.request
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from starmap.keys import HUB, STREAMS

from .conftest import MakeClient, MakeProcess
from .sse_client import SseStream, open_stream

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def backend() -> str:
    """Events do not depend on the store (the star tests cover both): SQLite will do."""
    return "sqlite"


async def stream(client: Client, path: str = "/events/stars/stream", **kwargs: Any) -> SseStream:
    opened = await open_stream(client.session, str(client.make_url(path)), **kwargs)
    assert opened.response.status == 200
    return opened


async def create(client: Client, sid: str, **body: Any) -> None:
    answer = await client.post("/stars", json={"x": 0, "y": 0, "message": sid, "id": sid, **body})
    assert answer.status == 201


async def test_headers_and_wire_format_are_what_a_browser_needs(client: Client) -> None:
    sub = await stream(client)
    headers = sub.response.headers
    assert headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    await create(client, "a")
    [event] = await sub.take(1)
    assert sub.retry == 3000
    assert sub.raw.startswith(b"retry: 3000")  # the retry field comes first
    assert event.event is None  # no event: line, so onmessage fires
    assert event.data_lines == 1
    assert event.id is not None
    body = event.json()
    assert (body["topic"], body["type"], body["data"]["id"]) == ("stars", "create", "a")
    assert set(body["data"]) >= {"x", "y", "message", "brightness", "likes", "is_popular"}
    assert b"event:" not in sub.raw
    sub.response.close()


async def test_two_subscribers_each_get_100_events_in_order(client: Client) -> None:
    first, second = await stream(client), await stream(client, "/events/stream?topics=stars")
    for i in range(100):
        await create(client, f"s{i:03d}")
    for sub in (first, second):
        events = await sub.take(100)
        assert [e.json()["data"]["id"] for e in events] == [f"s{i:03d}" for i in range(100)]
        ids = [e.id for e in events]
        assert len(set(ids)) == 100
        sub.response.close()


async def test_likes_and_deletes_are_streamed(make_client: MakeClient) -> None:
    client = await make_client(API_RATE_LIMIT_TIMES="1000")
    await create(client, "vega")
    sub = await stream(client)
    await asyncio.gather(*(client.post("/stars/vega/like", json={}) for _ in range(50)))
    await client.delete("/stars/vega")
    events: list[dict[str, Any]] = []
    while not events or events[-1]["type"] != "delete":
        events += [e.json() for e in await sub.take(1)]
    updates = [e for e in events if e["type"] == "update"]
    assert 1 <= len(updates) < 50  # conflated per flush
    assert updates[-1]["data"]["likes"] == 50
    assert events[-1] == {"topic": "stars", "type": "delete", "data": {"id": "vega", "x": 0.0, "y": 0.0}}
    sub.response.close()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_replays_exactly_the_missed_events(client: Client, how: str) -> None:
    sub = await stream(client)
    for i in range(3):
        await create(client, f"a{i}")
    seen = await sub.take(3)
    sub.response.close()
    for i in range(5):
        await create(client, f"b{i}")
    last = seen[-1].id
    assert last is not None
    if how == "header":
        again = await stream(client, last_event_id=last)
    else:
        again = await stream(client, f"/events/stars/stream?last_event_id={last}")
    await create(client, "live")  # published after the reconnect: no gap, no duplicate
    events = await again.take(6)
    assert [e.json()["data"]["id"] for e in events] == [f"b{i}" for i in range(5)] + ["live"]
    again.response.close()


async def test_any_id_resumes_any_stream(client: Client) -> None:
    hub = client.app[HUB]
    users = await stream(client, "/events/users/stream")
    hub.publish("users", "create", {"id": "u1"})
    [first] = await users.take(1)
    users.response.close()
    await create(client, "s1")
    hub.publish("users", "update", {"id": "u1"})
    combined = await stream(client, "/events/stream", last_event_id=first.id)
    got = [(e.json()["topic"], e.json()["type"]) for e in await combined.take(2)]
    assert got == [("stars", "create"), ("users", "update")]
    combined.response.close()


@pytest.mark.parametrize("last_id", ["garbage", "1-1", "99999999999999-5", "x" * 100])
async def test_an_unknown_or_malformed_id_gets_one_resync(client: Client, last_id: str) -> None:
    await create(client, "before")
    sub = await stream(client, last_event_id=last_id)
    await create(client, "after")
    resync, live = await sub.take(2)
    assert resync.json() == {"topic": "stars", "type": "resync", "data": {}}
    assert live.json()["data"]["id"] == "after"
    sub.response.close()


async def test_an_id_older_than_the_buffer_gets_a_resync(make_client: MakeClient) -> None:
    client = await make_client(SSE_REPLAY_BUFFER="3")
    sub = await stream(client)
    await create(client, "old")
    [old] = await sub.take(1)
    sub.response.close()
    for i in range(4):  # the buffer keeps 3: "new0", which "old"'s reader missed, is gone
        await create(client, f"new{i}")
    again = await stream(client, last_event_id=old.id)
    [resync] = await again.take(1)
    assert resync.json()["type"] == "resync"
    again.response.close()
    recent = await stream(client, last_event_id=client.app[HUB].recent[-2].id)
    [replayed] = await recent.take(1)
    assert replayed.json()["data"]["id"] == "new3"
    recent.response.close()


async def test_topics_users_and_combined(client: Client) -> None:
    hub = client.app[HUB]
    users = await stream(client, "/events/users/stream")
    stars = await stream(client)
    both = await stream(client, "/events/stream")
    hub.publish("users", "create", {"id": "u1"})
    await create(client, "s1")
    assert [e.json()["topic"] for e in await users.take(1)] == ["users"]
    assert [e.json()["topic"] for e in await stars.take(1)] == ["stars"]
    assert [e.json()["topic"] for e in await both.take(2)] == ["users", "stars"]
    for sub in (users, stars, both):
        sub.response.close()
    for bad in ("nope", "", "stars,nope"):
        answer = await client.get(f"/events/stream?topics={bad}")
        assert answer.status == 422


async def test_a_ping_comment_while_idle(make_client: MakeClient) -> None:
    client = await make_client(SSE_PING_INTERVAL="0.1")
    sub = await stream(client)
    await asyncio.sleep(0.35)
    await create(client, "after-pings")
    await sub.take(1)
    assert sub.comments >= 2
    sub.response.close()


async def test_a_client_that_never_reads_is_dropped_and_others_get_everything(
    make_client: MakeClient,
) -> None:
    client = await make_client(SSE_SUBSCRIBER_QUEUE="100")
    hub, streams = client.app[HUB], client.app[STREAMS]
    reader = await stream(client)
    stalled = socket.create_connection((client.host, client.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /events/stars/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    while streams.subscribers("stars") < 2:  # noqa: ASYNC110 - the raw socket has no event to wait on
        await asyncio.sleep(0.01)

    # More than the kernel's socket buffers hold (a few MB), or nothing is ever behind.
    total, padding = 2000, "x" * 5000
    received: list[int] = []

    async def read_all() -> None:
        for event in await reader.take(total, timeout=60):
            received.append(event.json()["data"]["n"])

    reading = asyncio.ensure_future(read_all())
    for n in range(total):
        hub.publish("stars", "update", {"n": n, "pad": padding})
        if n % 50 == 0:
            await asyncio.sleep(0.005)  # let the reader's stream keep up, as a real one would
            if n % 500 == 0:
                started = time.monotonic()
                assert (await client.get("/health/liveness")).status == 200
                assert time.monotonic() - started < 1
    await reading
    assert received == list(range(total))
    assert streams.dropped >= 1
    assert streams.subscribers("stars") == 1  # the stalled one is gone
    stalled.close()
    reader.response.close()


async def test_over_the_stream_cap_a_retry_hint_and_a_close(make_client: MakeClient) -> None:
    client = await make_client(SSE_MAX_STREAMS="2", SSE_RETRY_MS="1000")
    open_ = [await stream(client) for _ in range(2)]
    await asyncio.sleep(0.05)
    refused = await stream(client)
    assert refused.response.status == 200
    assert await refused.ended(timeout=5)
    assert refused.retry == 5000  # five times SSE_RETRY_MS: a full server is not asked again at once
    for sub in open_:
        sub.response.close()


def reset(sock: socket.socket) -> None:
    """Close with an RST, as a crashed client or a dropped mobile link does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def subscribers(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:  # noqa: S310 - loopback only
        text = answer.read().decode()
    return float(re.search(r'starmap_sse_subscribers\{topic="stars"\} (\S+)', text)[1])  # type: ignore[index]


@pytest.mark.slow
def test_streams_whose_clients_reset_free_their_slots_within_seconds(make_process: MakeProcess) -> None:
    """On the real server (handlers are not cancelled) a reset used to hold its slot until a ping."""
    proc = make_process()  # the ping stays at 15 s: it is not what frees them
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", proc.port))
        sock.sendall(b"GET /events/stars/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(sock)
    deadline = time.monotonic() + 5
    while subscribers(proc.url) < 20:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for sock in socks:
        reset(sock)
    started = time.monotonic()
    while (held := subscribers(proc.url)) > 0:
        assert time.monotonic() - started < 3, f"{held} slots still held"
        time.sleep(0.1)


async def stays_open(sub: SseStream, seconds: float = 0.3) -> bool:
    try:
        await sub.ended(timeout=seconds)
    except TimeoutError:
        return True
    return False


async def test_one_client_cannot_take_every_stream(make_client: MakeClient) -> None:
    client = await make_client(SSE_MAX_STREAMS_PER_CLIENT="3", API_TRUSTED_PROXIES="127.0.0.1")
    mine = [await stream(client, headers={"X-Forwarded-For": "203.0.113.9"}) for _ in range(3)]
    refused = await stream(client, headers={"X-Forwarded-For": "203.0.113.9"})
    assert refused.response.status == 200 and await refused.ended(timeout=5)
    assert refused.retry is not None and refused.retry > 0
    other = await stream(client, headers={"X-Forwarded-For": "198.51.100.7"})  # another client: served
    assert await stays_open(other)
    mine[0].response.close()
    await asyncio.sleep(1.5)  # its slot is freed (the sweep)
    again = await stream(client, headers={"X-Forwarded-For": "203.0.113.9"})
    assert await stays_open(again)
    for sub in (*mine[1:], other, again):
        sub.response.close()


async def test_cors_lets_an_allowed_page_subscribe(make_client: MakeClient) -> None:
    client = await make_client(API_CORS_ORIGINS="https://map.example")
    sub = await stream(client, headers={"Origin": "https://map.example"})
    assert sub.response.headers["Access-Control-Allow-Origin"] == "https://map.example"
    sub.response.close()


@pytest.mark.slow
async def test_sigterm_with_100_open_streams_exits_within_5_seconds(make_process: MakeProcess) -> None:
    proc = make_process(SSE_MAX_STREAMS_PER_CLIENT="200")  # all 100 from this one address
    # No pool limit: 100 streams plus the request that makes an event.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        streams = [await open_stream(session, f"{proc.url}/events/stream") for _ in range(100)]
        assert all(s.response.status == 200 for s in streams)
        async with session.post(f"{proc.url}/stars", json={"x": 0, "y": 0, "message": "m"}) as answer:
            assert answer.status == 201
        for s in streams[:5]:
            await s.take(1)
        assert proc.proc is not None
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        ended = await asyncio.gather(*(s.ended(timeout=5) for s in streams))
        assert all(ended)
        retries = [s.retry for s in streams]
        # The jittered goodbye: 1-3 x SSE_RETRY_MS (3,000), spread so reconnects do not arrive at once.
        assert all(r is not None and 3000 <= r <= 9000 for r in retries), retries
        assert len(set(retries)) > 50, "not spread out"
        assert await asyncio.to_thread(proc.proc.wait, 5) == 0
        assert time.monotonic() - started < 5
