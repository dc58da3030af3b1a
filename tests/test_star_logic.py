"""Pure logic: the brightness model, GCRA, the index, and the wire schemas."""

from __future__ import annotations

import pytest

from starmap.actors.messages import RateDecision
from starmap.actors.popularity import PopularityTracker
from starmap.actors.ratelimit import RateLimiter
from starmap.errors import ValidationFailed
from starmap.http.body import structure
from starmap.http.schemas import StarIn, converter
from starmap.index import StarIndex, decode_cursor, encode_cursor
from starmap.ratelimit import Verdict, gcra
from starmap.stars import (
    BUCKETS,
    BBox,
    Brightness,
    Star,
    StarPartitions,
    bucket,
    star_from_entity,
    star_to_entity,
)

MODEL = Brightness(half_life=3600.0, boost=20.0, floor=20.0)


def star(sid: str, x: float = 0.0, y: float = 0.0, created: float = 0.0, **kw: object) -> Star:
    fields: dict[str, object] = {"b0": 100.0, "t0": created, "likes": 0, "last_liked": created, **kw}
    return Star(id=sid, x=x, y=y, message="m", created_at=created, **fields)  # type: ignore[arg-type]


class TestBrightness:
    def test_halves_every_half_life_down_to_the_floor(self) -> None:
        assert MODEL.at(100, 0, 0) == 100
        assert MODEL.at(100, 0, 3600) == pytest.approx(50)
        assert MODEL.at(100, 0, 7200) == pytest.approx(25)
        assert MODEL.at(100, 0, 36000) == 20  # floor

    def test_a_like_boosts_from_now_and_caps_at_100(self) -> None:
        assert MODEL.liked(100, 0, 3600) == pytest.approx(70)
        assert MODEL.liked(90, 0, 0) == 100
        assert MODEL.liked(50, 0, 0, count=2) == 90
        assert MODEL.liked(50, 0, 0, count=3) == 100

    def test_a_batch_equals_the_likes_one_by_one(self) -> None:
        one_by_one = 30.0
        for _ in range(4):
            one_by_one = MODEL.liked(one_by_one, 10, 10)
        assert MODEL.liked(30.0, 10, 10, count=4) == one_by_one

    def test_a_clock_behind_t0_does_not_brighten(self) -> None:
        assert MODEL.at(60, 100, 50) == 60

    def test_never_under_the_floor_even_at_t0(self) -> None:
        assert MODEL.at(10, 50, 50) == 20
        assert MODEL.at(10, 100, 50) == 20
        assert MODEL.liked(0, 0, 0) == 40  # the floor, then the boost


class TestGcra:
    def test_allows_limit_then_refuses_with_retry_after(self) -> None:
        tat, now = 0.0, 1000.0
        remaining = []
        for _ in range(5):
            verdict = gcra(tat, now, limit=5, period=60)
            assert verdict.allowed
            tat = verdict.tat
            remaining.append(verdict.remaining)
        assert remaining == [4, 3, 2, 1, 0]
        refused = gcra(tat, now, limit=5, period=60)
        assert not refused.allowed
        assert refused.tat == tat
        assert refused.retry_after == pytest.approx(12)
        assert gcra(tat, now + 12, limit=5, period=60).allowed

    def test_a_quiet_client_gets_its_whole_quota_back(self) -> None:
        verdict = gcra(1060.0, 1120.0, limit=5, period=60)
        assert verdict.allowed
        assert verdict.remaining == 4


class TestIndex:
    def test_pages_in_creation_order_with_cursors(self) -> None:
        index = StarIndex([star(f"s{i}", created=float(10 - i)) for i in range(10)])
        seen, cursor = [], None
        while True:
            page, cursor = index.page(limit=3, cursor=cursor)
            seen += [s.id for s in page]
            if cursor is None:
                break
        assert seen == [f"s{i}" for i in range(9, -1, -1)]

    def test_a_cursor_survives_the_deletion_of_its_star(self) -> None:
        index = StarIndex([star(f"s{i}", created=float(i)) for i in range(5)])
        page, cursor = index.page(limit=2)
        index.remove(page[-1].id)
        rest, _ = index.page(limit=10, cursor=cursor)
        assert [s.id for s in rest] == ["s2", "s3", "s4"]

    def test_bbox_keeps_the_stars_inside_edges_included(self) -> None:
        points = {"a": (-1.0, -1.0), "b": (0.0, 0.0), "c": (0.5, 0.5), "d": (1.0, 1.0), "e": (0.51, 0.2)}
        index = StarIndex([star(k, x, y, created=float(i)) for i, (k, (x, y)) in enumerate(points.items())])
        assert [s.id for s in index.in_box(BBox(0, 0, 0.5, 0.5))] == ["b", "c"]
        assert [s.id for s in index.in_box(BBox(-1, -1, 1, 1))] == ["a", "b", "c", "d", "e"]
        page, cursor = index.page(limit=1, bbox=BBox(0, 0, 1, 1))
        assert [s.id for s in page] == ["b"]
        assert [s.id for s in index.page(limit=5, cursor=cursor, bbox=BBox(0, 0, 1, 1))[0]] == ["c", "d", "e"]

    def test_add_replace_remove(self) -> None:
        index = StarIndex()
        index.add(star("a", 0.1, 0.1))
        assert index.replace(star("a", 0.1, 0.1, likes=3))
        assert not index.replace(star("zz"))
        assert index.get("a") is not None and index.get("a").likes == 3  # type: ignore[union-attr]
        assert index.remove("a") is not None
        assert len(index) == 0
        assert index.in_box(BBox(-1, -1, 1, 1)) == []

    @pytest.mark.parametrize("cursor", ["!!", "bm90IGpzb24", encode_cursor((1.0, "x"))[:-3], "WzEsMl0"])
    def test_a_foreign_cursor_is_a_validation_error(self, cursor: str) -> None:
        with pytest.raises(ValidationFailed):
            decode_cursor(cursor)


def test_a_like_makes_a_new_star_and_leaves_the_old_one_as_it_was() -> None:
    """Caches key on a star's identity (a changed star is a new object) and keep its digest:
    a like must not touch the star it starts from. Stars compare and hash by value."""
    old = star("s1", 0.25, -0.5, created=10.0, batches=("a",))
    before = (old.likes, old.b0, old.t0, old.last_liked, old.batches, old.digest)
    new = old.with_likes(MODEL, 2, 20.0, "b")
    assert new is not old
    assert (old.likes, old.b0, old.t0, old.last_liked, old.batches, old.digest) == before
    assert (new.likes, new.t0, new.last_liked, new.batches) == (2, 20.0, 20.0, ("a", "b"))
    assert new.b0 == MODEL.liked(old.b0, old.t0, 20.0, 2)
    assert new.digest != old.digest
    twin = star("s1", 0.25, -0.5, created=10.0, batches=("a",))
    assert twin == old and hash(twin) == hash(old) and len({twin, old}) == 1


def test_entities_round_trip_and_spread_over_buckets() -> None:
    s = star("abc", 0.25, -0.5, created=12.5, user_id="u1", batches=("x1", "x2"))
    assert star_from_entity(star_to_entity(s)) == s
    # Every field its own value: a field read into another's place cannot go unnoticed.
    distinct = Star("id", 0.1, 0.2, "m", 30.0, 40.0, 5, 60.0, 70.0, "u", ("b",))
    assert star_from_entity(star_to_entity(distinct, "b01")) == distinct
    assert star_to_entity(distinct, "b01")["PartitionKey"] == "b01"
    assert "PartitionKey" not in star_to_entity(distinct)  # a mirror's or an event's copy
    assert len({bucket(f"id{i}") for i in range(1000)}) == 32


def test_a_table_spreads_its_stars_over_its_own_count_of_partitions() -> None:
    ids = [f"id{i}" for i in range(1000)]
    assert {StarPartitions(8).of(i) for i in ids} == {f"b{n:02d}" for n in range(8)}
    # 32 is the layout of the tables from before the count was recorded: the same keys.
    assert [StarPartitions(BUCKETS).of(i) for i in ids] == [bucket(i) for i in ids]
    # Where a row may be: its own partition, then (another count) where an older replica put it.
    assert all(StarPartitions(BUCKETS).candidates(i) == (bucket(i),) for i in ids)
    eight = StarPartitions(8)
    assert {eight.candidates(i) for i in ids} >= {
        (eight.of(i), bucket(i)) for i in ids if eight.of(i) != bucket(i)
    }
    assert all(eight.candidates(i)[0] == eight.of(i) and eight.candidates(i)[-1] == bucket(i) for i in ids)
    for count in (0, 101, 8.0, True, "8"):
        with pytest.raises(ValueError, match="count"):
            StarPartitions(count)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"x": True, "y": 0, "message": "m"}, "x"),
        ({"x": "0.5", "y": 0, "message": "m"}, "x"),
        ({"x": 1.5, "y": 0, "message": "m"}, "x"),
        ({"x": 0, "y": -1.01, "message": "m"}, "y"),
        ({"x": 0, "y": None, "message": "m"}, "y"),
        ({"x": 0, "message": "m"}, "y"),
        ({"x": 0, "y": 0, "message": ""}, "message"),
        ({"x": 0, "y": 0, "message": "é" * 281}, "message"),
        ({"x": 0, "y": 0, "message": "bell\x07"}, "message"),
        ({"x": 0, "y": 0, "message": "nul\x00"}, "message"),
        ({"x": 0, "y": 0, "message": "c1\x85"}, "message"),
        ({"x": 0, "y": 0, "message": "\ud800"}, "message"),
        ({"x": 0, "y": 0, "message": 5}, "message"),
        ({"x": 0, "y": 0, "message": "m", "brightness": 100.5}, "brightness"),
        ({"x": 0, "y": 0, "message": "m", "brightness": -1}, "brightness"),
        ({"x": 0, "y": 0, "message": "m", "id": "has space"}, "id"),
        ({"x": 0, "y": 0, "message": "m", "id": "x" * 65}, "id"),
        ({"x": 0, "y": 0, "message": "m", "id": "active"}, "id"),
        ({"x": 0, "y": 0, "message": "m", "id": 7}, "id"),
        ({"x": 0, "y": 0, "message": "m", "user_id": "a'b"}, "user_id"),
    ],
)
def test_star_validation_names_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        structure(body, StarIn, converter)
    assert list(caught.value.errors) == [field]


def test_a_valid_star_body_with_all_limits() -> None:
    body = {"x": -1, "y": 1.0, "message": "✨" * 280 + "", "brightness": 0, "id": "A-z_9", "extra": 1}
    star_in = structure(body, StarIn, converter)
    assert (star_in.x, star_in.y, star_in.brightness, star_in.id) == (-1.0, 1.0, 0.0, "A-z_9")
    assert structure({"x": 0, "y": 0, "message": "line\n\ttab"}, StarIn, converter).brightness == 100.0


def test_client_address_reads_forwarded_for_from_the_right() -> None:
    from ipaddress import ip_network

    from starmap.http.clients import client_address

    proxies = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]
    assert client_address("203.0.113.9", ["1.1.1.1"], proxies) == "203.0.113.9"  # untrusted peer
    assert client_address("10.0.0.2", ["6.6.6.6, 198.51.100.7"], proxies) == "198.51.100.7"
    assert client_address("10.0.0.2", ["6.6.6.6", "198.51.100.7, 10.0.0.3"], proxies) == "198.51.100.7"
    assert client_address("10.0.0.2", ["198.51.100.7:5123"], proxies) == "198.51.100.7"  # a port
    assert client_address("fd00::1", ["[2001:db8::7]:443"], proxies) == "2001:db8::7"
    assert client_address("10.0.0.2", [], proxies) == "10.0.0.2"  # a proxy that forwarded nothing
    assert client_address("10.0.0.2", ["10.0.0.9"], proxies) == "10.0.0.9"  # only proxies
    assert client_address("10.0.0.2", ["not-an-ip"], proxies) == "not-an-ip"
    assert client_address(None, ["1.1.1.1"], proxies) == "unknown"


def test_popular_stars_are_a_new_set_when_one_joins_or_leaves_and_counts_update_in_place() -> None:
    now = 1_000_000.0
    tracker = PopularityTracker("local", window=3600, threshold=3, clock=lambda: now)
    assert tracker.count_likes("a", 2, now) is False
    assert tracker.count_likes("a", 1, now) is True
    first = tracker.current()
    assert first == {"a": 3}
    # Liked again, still popular: the same set, its count up (no copy of every popular star).
    assert tracker.count_likes("a", 4, now) is True
    assert tracker.current() is first and first == {"a": 7}
    # Another star joins: a new set; whoever holds the old one still sees a whole one.
    tracker.count_likes("b", 3, now)
    second = tracker.current()
    assert second is not first and second == {"a": 7, "b": 3} and first == {"a": 7}
    # Likes slide out of the window: a new set without them.
    now += 3600 + 60
    tracker.count_likes("b", 1, now)
    assert tracker.current() == {} and second == {"a": 7, "b": 3}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def local_limiter(limit: int, period: float, max_clients: int) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter("local", limit=limit, period=period, max_clients=max_clients, clock=clock), clock


def test_the_local_limiter_allows_the_limit_then_refuses_until_an_interval_passes() -> None:
    limiter, clock = local_limiter(3, 60.0, 100)
    decisions = [limiter.decide_locally("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(20.0)
    # Whole decisions, every field in its place (they are made as tuples at once).
    assert all(type(d) is RateDecision for d in decisions)
    first, refused = decisions[0], decisions[-1]
    assert first[:3] == (True, 3, 2) and first[3:] == pytest.approx((20.0, 0.0))
    assert refused[:3] == (False, 3, 0) and refused[3:] == pytest.approx((60.0, 20.0))
    verdict = gcra(0.0, 100.0, limit=3, period=60.0)
    assert type(verdict) is Verdict and verdict == Verdict(True, 120.0, 2, 20.0, 0.0)
    assert limiter.decide_locally("b").allowed  # per client
    clock.now += 20.0
    assert limiter.decide_locally("a").allowed
    assert not limiter.decide_locally("a").allowed


def test_the_local_limiter_forgets_clients_whose_quota_is_back() -> None:
    limiter, clock = local_limiter(10, 1.0, 100)
    for client in ("a", "b", "c"):
        limiter.decide_locally(client)
    assert limiter.state()["local_clients"] == 3
    clock.now += 2.0  # every TAT has passed: nothing to remember
    limiter.decide_locally("d")
    assert limiter.state()["local_clients"] == 1


def test_the_local_limiter_remembers_at_most_max_clients_the_least_recently_allowed_go_first() -> None:
    limiter, _ = local_limiter(1, 60.0, 2)
    assert limiter.decide_locally("a").allowed
    assert limiter.decide_locally("b").allowed
    assert limiter.decide_locally("c").allowed  # "a" is forgotten to make room
    assert limiter.state()["local_clients"] == 2
    assert not limiter.decide_locally("b").allowed and not limiter.decide_locally("c").allowed
    assert limiter.decide_locally("a").allowed  # forgotten: it can only gain from that
