"""The hub and the streams as units: ids, replay bounds, priming, resync, fan-out, dropping."""

from __future__ import annotations

from typing import Any, cast

from aiohttp_sse import EventSourceResponse

from starmap.events import Hub, _point, parse_event_id
from starmap.http.streams import Streams
from starmap.settings import SseSettings


class Recorder:
    """A sink that keeps what it gets; ``refuse`` makes it ask to be dropped."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.frames: list[bytes] = []
        self.refuse = refuse

    def send(self, payload: bytes, point: tuple[float, float] | None = None) -> bool:
        self.frames.append(payload)
        return not self.refuse


def hub() -> Hub:
    return Hub.from_settings(SseSettings())


def ids(hub: Hub) -> list[str]:
    return [e.id for e in hub.recent]


def test_local_ids_only_go_forward_like_redis_ids() -> None:
    h = hub()
    for n in range(50):
        h.publish("stars", "update", {"n": n})
    parsed = [p for p in map(parse_event_id, ids(h)) if p is not None]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == 50


def test_delivered_ids_at_or_before_the_last_are_ignored() -> None:
    h = hub()
    assert h.deliver("9999999999999-1", "stars", "create", {"id": "a"}) is not None
    assert h.deliver("9999999999999-1", "stars", "create", {"id": "dup"}) is None
    assert h.deliver("9999999999998-7", "stars", "create", {"id": "old"}) is None
    assert h.deliver("not-an-id", "stars", "create", {}) is None
    assert [e.data["id"] for e in h.recent] == ["a"]


def test_priming_sets_where_exact_replay_starts() -> None:
    h = hub()
    h.prime([(f"9000000000000-{n}", "stars", "create", {"id": f"s{n}"}) for n in range(1, 6)])
    sink = Recorder()
    assert len(h.subscribe(["stars"], "9000000000000-3", sink)) == 2  # s4, s5
    older = h.subscribe(["stars"], "8999999999999-0", Recorder())
    assert b'"resync"' in older[0]
    h.deliver("9000000000001-0", "stars", "create", {"id": "live"})
    assert len(sink.frames) == 1  # live events flow to it after its replay


def test_resync_all_reaches_every_sink() -> None:
    h = hub()
    sinks = [Recorder(), Recorder(), Recorder()]
    for topics, sink in zip((["stars"], ["users"], ["stars", "users"]), sinks, strict=True):
        h.subscribe(topics, None, sink)
    h.resync_all()
    assert [len(s.frames) for s in sinks] == [1, 1, 2]


def test_a_sink_that_refuses_gets_nothing_more_and_the_others_everything() -> None:
    h = hub()
    refusing, taking = Recorder(refuse=True), Recorder()
    h.subscribe(["stars"], None, refusing)
    h.subscribe(["stars"], None, taking)
    for n in range(3):
        h.publish("stars", "update", {"n": n})
    assert len(refusing.frames) == 1 and len(taking.frames) == 3


async def test_a_stream_over_its_queue_is_dropped_and_the_rest_are_not() -> None:
    h = hub()
    streams = Streams(h, queue_limit=3, flush_interval=0.03)
    response = cast(EventSourceResponse, cast(Any, object()))  # never reached while queued
    slow, fast = streams.open(["stars"], None, response, "a"), streams.open(["stars"], None, response, "b")
    for n in range(3):
        h.publish("stars", "update", {"n": n})
    assert await fast.next() is not None  # the fast one reads
    h.publish("stars", "update", {"n": 3})
    assert slow.closed and not fast.closed
    assert streams.subscribers("stars") == 1 and streams.dropped == 1


async def test_viewport_groups_filter_by_point_and_share_the_one_encoding() -> None:
    """Filtering looks at the point beside the frame: every stream gets the same bytes object."""
    from starmap.http.streams import Group
    from starmap.stars import BBox

    h = hub()
    streams = Streams(h, queue_limit=10, flush_interval=1.0)
    boxes = [BBox(0, 0, 1, 1), BBox(-1, -1, 0, 0), None]
    groups = [Group(frozenset({"stars"}), streams, box) for box in boxes]
    for group in groups:
        group.members.add(cast(Any, object()))  # a member: the group keeps what it is sent
        h.subscribe(["stars"], None, group)
    h.deliver("9999999999999-1", "stars", "create", {"id": "ne", "x": 0.5, "y": 0.5})
    h.deliver("9999999999999-2", "stars", "create", {"id": "sw", "x": -0.5, "y": -0.5})
    h.deliver("9999999999999-3", "stars", "clear", {"count": 2})
    ne, sw, clear = (e.payload for e in h.recent)
    assert [[id(p) for p in g.pending] for g in groups] == [
        [id(ne), id(clear)],
        [id(sw), id(clear)],
        [id(ne), id(sw), id(clear)],
    ]


def test_an_events_point_is_its_stars_place_floats_as_they_are_numbers_converted() -> None:
    assert _point({"x": 0.25, "y": -0.5}) == (0.25, -0.5)  # a star's: the fast path
    assert _point({"x": 1, "y": 0.5}) == (1.0, 0.5)  # a number of another type: converted
    assert all(type(c) is float for c in _point({"x": 1, "y": 0}) or ())
    for no_point in ({}, {"x": 0.5}, {"x": "0.5", "y": 0.5}, {"x": None, "y": None}):
        assert _point(no_point) is None
