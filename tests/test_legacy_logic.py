"""The original service's rows read as stars and users: each rule of ``starmap.legacy``, no I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from starmap.layout import LAYOUT, Census, RowKind, classify
from starmap.legacy import Converted, Options, choose_stars, choose_users, convert_star, convert_user
from starmap.stars import Star, bucket, star_census, star_to_entity
from starmap.users import User, user_census, user_to_entity

from .legacy_data import BASE_TIME, original_layout

GOOD: dict[str, Any] = {
    "PartitionKey": "STAR_202311",
    "RowKey": "abc",
    "X": 0.5,
    "Y": -0.5,
    "Message": "hello",
    "Brightness": 60.0,
    "LastLiked": BASE_TIME + 100,
    "CreatedAt": BASE_TIME,
}
REPAIR = Options(repair=True)


def star(**changes: Any) -> Converted[Star]:
    return convert_star({**GOOD, **changes}, Options())


def test_a_clean_row_keeps_id_position_message_times_and_brightness() -> None:
    converted = star()
    assert converted.ok and not converted.notes
    assert converted.value == Star(
        id="abc", x=0.5, y=-0.5, message="hello", b0=60.0, t0=BASE_TIME + 100, likes=0,
        created_at=BASE_TIME, last_liked=BASE_TIME + 100,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"X": None}, "X is missing"),
        ({"Y": "north"}, "Y is 'north', not a number"),
        ({"X": True}, "X is a boolean"),
        ({"X": math.nan}, "X is nan, not a finite number"),
        ({"X": 1.5}, "X 1.5 is outside [-1, 1] (--repair clamps it)"),
        ({"Message": None}, "Message is missing"),
        ({"Message": 42}, "Message is not text"),
        ({"Message": "   "}, "Message is empty"),
        (
            {"Message": "m" * 281},
            "Message must be 1 to 280 characters, not 281 (--repair cuts and cleans it)",
        ),
        ({"Message": "a\x07b"}, "Message must not contain control characters"),
        ({"RowKey": "has space"}, "the id must be 1 to 64 characters"),
        ({"RowKey": "active"}, "the id 'active' is reserved"),
        (
            {"CreatedAt": None, "PartitionKey": "by-hand"},
            "CreatedAt is missing and the partition names no month",
        ),
    ],
)
def test_rows_that_cannot_be_stars_are_skipped_with_the_reason(changes: dict[str, Any], reason: str) -> None:
    converted = star(**changes)
    assert not converted.ok
    assert converted.reason is not None and converted.reason.startswith(reason)


def test_numbers_of_other_edm_types_are_read_as_numbers() -> None:
    converted = star(X=0, Y="0.25", Brightness=70, CreatedAt=str(BASE_TIME))
    assert converted.value is not None
    assert (converted.value.x, converted.value.y, converted.value.b0) == (0.0, 0.25, 70.0)
    assert converted.value.created_at == BASE_TIME


@pytest.mark.parametrize(
    ("changes", "b0", "note"),
    [
        ({"Brightness": math.nan}, 0.0, "Brightness is NaN: imported at the minimum brightness"),
        ({"Brightness": None}, 0.0, "Brightness is missing: imported at the minimum brightness"),
        ({"Brightness": 250.0}, 100.0, "Brightness 250 clamped to 100"),
        ({"Brightness": -5}, 0.0, "Brightness -5 clamped to 0"),
    ],
)
def test_brightness_out_of_shape_is_imported_with_a_note(
    changes: dict[str, Any], b0: float, note: str
) -> None:
    converted = star(**changes)
    assert converted.value is not None and converted.value.b0 == b0
    assert converted.notes == (note,)


def test_missing_times_fall_back_to_the_partition_month_and_the_creation() -> None:
    converted = star(CreatedAt=None, LastLiked=None, PartitionKey="STAR_202402")
    assert converted.value is not None
    month = datetime(2024, 2, 1, tzinfo=UTC).timestamp()
    assert converted.value.created_at == month == converted.value.last_liked == converted.value.t0
    assert len(converted.notes) == 2


def test_repair_clamps_positions_and_cuts_and_cleans_messages() -> None:
    converted = convert_star({**GOOD, "X": 1.5, "Y": -3, "Message": "a\x00b" + "c" * 300}, REPAIR)
    assert converted.value is not None
    assert (converted.value.x, converted.value.y) == (1.0, -1.0)
    assert converted.value.message == ("ab" + "c" * 300)[:280]
    assert len(converted.notes) == 3
    assert not convert_star({**GOOD, "Message": "\x01\x02"}, REPAIR).ok  # nothing left once cleaned


def test_the_same_id_in_two_partitions_imports_the_one_liked_last() -> None:
    older = convert_star({**GOOD, "PartitionKey": "STAR_202310"}, Options())
    newer = convert_star({**GOOD, "LastLiked": BASE_TIME + 999}, Options())
    chosen = choose_stars([older, newer])
    assert [c.ok for c in chosen] == [False, True]
    assert chosen[0].reason == "the same id is in partition 'STAR_202311', liked later"


def user(row: str, email: str, created: Any = "2023-01-01T10:00:00", name: Any = "Name") -> dict[str, Any]:
    return {"PartitionKey": "USER", "RowKey": row, "Username": name, "Email": email, "CreatedAt": created}


def test_user_creation_times_are_read_in_the_original_servers_zone() -> None:
    utc = convert_user(user("u", "a@b.co"), Options(), now=0).value
    berlin = convert_user(user("u", "a@b.co"), Options(timezone=ZoneInfo("Europe/Berlin")), now=0).value
    assert utc is not None and berlin is not None
    assert utc.created_at == datetime(2023, 1, 1, 10, tzinfo=UTC).timestamp()
    assert utc.created_at - berlin.created_at == 3600  # 10:00 in Berlin is 09:00 UTC in January
    missing = convert_user(user("u", "a@b.co", created=None), Options(), now=123.0)
    assert missing.value is not None and missing.value.created_at == 123.0 and missing.notes


def test_the_oldest_holder_keeps_an_address_and_the_others_are_reported() -> None:
    rows = [
        convert_user(user("new", " ALICE@example.com", "2023-06-01T00:00:00"), Options(), now=0),
        convert_user(user("old", "alice@example.com", "2023-01-01T00:00:00"), Options(), now=0),
        convert_user(user("bad", "not-an-address"), Options(), now=0),
    ]
    chosen = choose_users(rows, Options())
    assert [c.ok for c in chosen] == [False, True, False]
    assert chosen[0].reason == "the address 'ALICE@example.com' is held by the older user 'old' " + (
        "(--placeholder-emails imports it)"
    )
    assert chosen[2].reason is not None and chosen[2].reason.startswith(
        "the address 'not-an-address' is not valid"
    )


def test_placeholder_addresses_are_unique_and_never_deliver() -> None:
    rows = [
        convert_user(user("old", "alice@example.com", "2023-01-01T00:00:00"), Options(), now=0),
        convert_user(user("new", "Alice@example.com", "2023-06-01T00:00:00"), Options(), now=0),
        convert_user(user("bad", "nope"), Options(), now=0),
    ]
    chosen = choose_users(rows, Options(placeholder_emails=True))
    emails = [c.value.email for c in chosen if c.value is not None]
    assert emails == ["alice@example.com", "new@legacy.invalid", "bad@legacy.invalid"]


def test_an_address_held_in_star_map_already_is_not_taken() -> None:
    rows = [convert_user(user("legacy", "dana@example.com"), Options(), now=0)]
    assert not choose_users(rows, Options(), holders={"dana@example.com": "someone"})[0].ok
    assert choose_users(rows, Options(), holders={"dana@example.com": "legacy"})[0].ok  # its own: a resume


def test_usernames_that_break_the_rules_are_skipped_or_repaired() -> None:
    assert convert_user(user("u", "a@b.co", name="x"), Options(), now=0).reason == (
        "Username must be 2 to 100 characters, not only spaces (--repair cuts and cleans it)"
    )
    repaired = convert_user(user("u", "a@b.co", name="Zoë\x00" + "z" * 200), REPAIR, now=0).value
    assert repaired is not None and repaired.name == ("Zoë" + "z" * 200)[:100]


def test_layouts_are_told_apart() -> None:
    ours = star_to_entity(Star("s1", 0, 0, "m", 100, 0, 0, 0, 0), bucket("s1"))
    assert ours["layout"] == LAYOUT
    assert classify(ours, partition=bucket("s1"), required=("x",)) is RowKind.CURRENT
    before_the_marker = {k: v for k, v in ours.items() if k != "layout"}
    assert classify(before_the_marker, partition=bucket("s1"), required=("x",)) is RowKind.CURRENT
    assert classify({**ours, "layout": 2}, partition=bucket("s1"), required=()) is RowKind.NEWER
    assert classify({**ours, "layout": True}, partition=bucket("s1"), required=()) is RowKind.NEWER
    assert classify(GOOD, partition=bucket("abc"), required=("x",)) is RowKind.ORIGINAL


def test_a_census_reads_its_own_rows_and_counts_every_other() -> None:
    census: Census[Star] = star_census()
    original = original_layout()
    mine = Star("mine", 0, 0, "m", 100, 0, 0, 0, 0)
    unreadable = {**star_to_entity(Star("broken", 0, 0, "m", 100, 0, 0, 0, 0)), "x": "oops"}
    newer = {**star_to_entity(Star("later", 0, 0, "m", 100, 0, 0, 0, 0)), "layout": 2}
    rows = [star_to_entity(mine), unreadable, newer, *original.stars]
    read = [census.take(r) for r in rows]
    assert read[0] == mine and all(r is None for r in read[1:])
    first = str(original.stars[0]["RowKey"])
    assert census.summary({"mine", first}) == {
        "not_imported": len(original.stars) - 1,
        "imported_source_kept": 1,
        "newer_layout": 1,
        "unreadable": 1,
    }
    users: Census[User] = user_census()
    assert users.take(user_to_entity(User("u1", "Name", "a@b.co", 0))) is not None
    assert [users.take(u) for u in original.users] == [None] * len(original.users)
