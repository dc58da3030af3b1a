"""The hub as a unit: ids, replay bounds, priming from the shared stream, resync."""

from __future__ import annotations

from starmap.events import Hub, parse_event_id
from starmap.settings import PositiveInt, SseSettings


def ids(hub: Hub) -> list[str]:
    return [e.id for e in hub.recent]


def test_local_ids_only_go_forward_like_redis_ids() -> None:
    hub = Hub.from_settings(SseSettings())
    for n in range(50):
        hub.publish("stars", "update", {"n": n})
    parsed = [p for p in map(parse_event_id, ids(hub)) if p is not None]
    assert parsed == sorted(parsed)
    assert len(set(parsed)) == 50


def test_delivered_ids_at_or_before_the_last_are_ignored() -> None:
    hub = Hub.from_settings(SseSettings())
    assert hub.deliver("9999999999999-1", "stars", "create", {"id": "a"}) is not None
    assert hub.deliver("9999999999999-1", "stars", "create", {"id": "dup"}) is None
    assert hub.deliver("9999999999998-7", "stars", "create", {"id": "old"}) is None
    assert hub.deliver("not-an-id", "stars", "create", {}) is None
    assert [e.data["id"] for e in hub.recent] == ["a"]


def test_priming_sets_where_exact_replay_starts() -> None:
    hub = Hub.from_settings(SseSettings())
    hub.prime([(f"9000000000000-{n}", "stars", "create", {"id": f"s{n}"}) for n in range(1, 6)])
    sub = hub.subscribe(["stars"], "9000000000000-3")
    assert len(sub.replay) == 2  # s4, s5
    older = hub.subscribe(["stars"], "8999999999999-0")
    assert b'"resync"' in older.replay[0]
    hub.deliver("9000000000001-0", "stars", "create", {"id": "live"})
    assert sub.pending() == 1  # live events flow to it after its replay


def test_resync_all_reaches_every_stream() -> None:
    hub = Hub.from_settings(SseSettings())
    subs = [hub.subscribe(["stars"]), hub.subscribe(["users"]), hub.subscribe(["stars", "users"])]
    hub.resync_all()
    assert [s.pending() for s in subs] == [1, 1, 2]


def test_a_subscriber_over_its_queue_is_dropped_and_the_rest_are_not() -> None:
    hub = Hub.from_settings(SseSettings(subscriber_queue=PositiveInt(3)))
    slow, fast = hub.subscribe(["stars"]), hub.subscribe(["stars"])
    for n in range(3):
        hub.publish("stars", "update", {"n": n})
    assert fast._queue is not None
    fast._queue.get_nowait()  # the fast one reads
    hub.publish("stars", "update", {"n": 3})
    assert slow.dropped and slow.closed
    assert not fast.dropped
    assert hub.subscribers("stars") == 1 and hub.dropped == 1
