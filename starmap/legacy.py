"""The original service's rows, read as this service's stars and users (pure logic, no I/O).

The original Star Map backend (FastAPI) kept, in tables with the names this service
uses (``../shared/LEGACY.md`` has the facts):

- ``Stars``: ``PartitionKey = STAR_YYYYMM``, ``RowKey`` the id; ``X``, ``Y``, ``Message``,
  ``Brightness`` (the stored base, 0..100), ``LastLiked`` and ``CreatedAt`` (Unix seconds);
  no like count.
- ``Users``: ``PartitionKey = USER``, ``RowKey`` the id; ``Username``, ``Email`` (never
  validated, never unique), ``CreatedAt`` (ISO 8601 without a zone, the server's local time).

Real rows are dirty. What this module decides, row by row:

- A star keeps its id, position, message and creation time; ``Brightness`` becomes the
  base and ``LastLiked`` its time, so it shines as it did; likes start at 0.
- Numbers may be Int32 or numeric text where a Double belongs: they are read as numbers.
- Skipped, with the reason: an id this service cannot serve (``[A-Za-z0-9_-]{1,64}``), a
  missing or non-numeric ``X``/``Y``, a missing or empty ``Message``; and, unless
  ``repair`` is on, coordinates outside [-1, 1] and messages over 280 characters or with
  control characters (``repair`` clamps the one and cuts/cleans the other).
- Imported with a note: ``Brightness`` missing or NaN (imported at the minimum) or outside
  0..100 (clamped); ``LastLiked`` missing (the creation time); ``CreatedAt`` missing (the
  first instant of the partition's month).
- The same id in several partitions: the row liked last is imported, the others skipped.
- Users: the oldest holder of an address keeps it (case-insensitively); the other holders
  and every invalid address are skipped and reported, or, with ``placeholder_emails``,
  imported with the address ``<id>@legacy.invalid`` (the original kept as ``legacy_email``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Final, Generic, TypeVar

import attrs

from .rules import MAX_MESSAGE, MAX_NAME, check_email, check_id, check_message, check_name
from .stars import Star
from .users import User, email_key

__all__ = (
    "PLACEHOLDER_DOMAIN",
    "Converted",
    "Options",
    "choose_stars",
    "choose_users",
    "convert_star",
    "convert_user",
)

T = TypeVar("T")

STAR_PARTITION: Final = re.compile(r"STAR_(\d{4})(\d{2})")
PLACEHOLDER_DOMAIN: Final = "legacy.invalid"  # .invalid is reserved (RFC 2606): it never delivers
_REPAIR_HINT: Final = " (--repair {})"


@attrs.frozen
class Options:
    """How dirty rows are treated (the flags of ``starmap import-legacy``)."""

    repair: bool = False
    placeholder_emails: bool = False
    # The zone of the original server, for its zone-less ``CreatedAt`` of users.
    timezone: tzinfo = UTC


@attrs.frozen
class Converted(Generic[T]):
    """One source row read: the value to import, or why not; notes on what was changed."""

    partition: str
    row: str
    value: T | None = None
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.value is not None


class _Skip(Exception):
    """A row that cannot be imported; the message says why."""


def _number(entity: Mapping[str, Any], name: str) -> float:
    """A Double (or an Int32, or numeric text) property; ``_Skip`` if missing or not a number."""
    if name not in entity or entity[name] is None:
        raise _Skip(f"{name} is missing")
    value = entity[name]
    if isinstance(value, bool):
        raise _Skip(f"{name} is a boolean, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _Skip(f"{name} is {value[:40]!r}, not a number") from None
    raise _Skip(f"{name} is not a number")


def _coordinate(entity: Mapping[str, Any], name: str, repair: bool, notes: list[str]) -> float:
    value = _number(entity, name)
    if not math.isfinite(value):
        raise _Skip(f"{name} is {value}, not a finite number")
    if -1.0 <= value <= 1.0:
        return value
    if not repair:
        raise _Skip(f"{name} {value:g} is outside [-1, 1]" + _REPAIR_HINT.format("clamps it"))
    clamped = min(1.0, max(-1.0, value))
    notes.append(f"{name} {value:g} clamped to {clamped:g}")
    return clamped


def _clean_message(text: str) -> str:
    """The text without what this service refuses in a message, cut to the longest allowed."""
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs"))
    return kept[:MAX_MESSAGE]


def _message(entity: Mapping[str, Any], repair: bool, notes: list[str]) -> str:
    value = entity.get("Message")
    if value is None:
        raise _Skip("Message is missing")
    if not isinstance(value, str):
        raise _Skip("Message is not text")
    if not value.strip():
        raise _Skip("Message is empty")
    try:
        return check_message(value)
    except ValueError as exc:
        problem = str(exc)
    if not repair:
        raise _Skip(f"Message {problem}" + _REPAIR_HINT.format("cuts and cleans it"))
    cleaned = _clean_message(value)
    if not cleaned.strip():
        raise _Skip(f"Message {problem}, and nothing is left once cleaned")
    notes.append(f"Message cut or cleaned ({problem})")
    return check_message(cleaned)


def _month_start(partition: str) -> float | None:
    match = STAR_PARTITION.fullmatch(partition)
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or year < 1970:
        return None
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def _time(entity: Mapping[str, Any], name: str) -> float | None:
    """A Unix-seconds property, or None when missing or not a usable number."""
    try:
        value = _number(entity, name)
    except _Skip:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _id(row: str) -> str:
    try:
        return check_id(row)
    except ValueError as exc:
        raise _Skip(f"the id {exc}") from None


def convert_star(entity: Mapping[str, Any], options: Options) -> Converted[Star]:
    """One original ``Stars`` row as a star of this service, or the reason it cannot be one."""
    partition, row = str(entity.get("PartitionKey", "")), str(entity.get("RowKey", ""))
    notes: list[str] = []
    try:
        star_id = _id(row)
        x = _coordinate(entity, "X", options.repair, notes)
        y = _coordinate(entity, "Y", options.repair, notes)
        message = _message(entity, options.repair, notes)
        created_at = _time(entity, "CreatedAt")
        if created_at is None:
            created_at = _month_start(partition)
            if created_at is None:
                raise _Skip("CreatedAt is missing and the partition names no month")
            notes.append("CreatedAt missing: the first instant of its partition's month")
        last_liked = _time(entity, "LastLiked")
        if last_liked is None:
            last_liked = created_at
            notes.append("LastLiked missing: its creation time")
        try:
            brightness, why = _number(entity, "Brightness"), "Brightness is NaN"
        except _Skip as exc:
            brightness, why = math.nan, str(exc)
        if math.isnan(brightness):
            notes.append(f"{why}: imported at the minimum brightness")
            brightness = 0.0
        elif not 0.0 <= brightness <= 100.0:
            clamped = min(100.0, max(0.0, brightness))
            notes.append(f"Brightness {brightness:g} clamped to {clamped:g}")
            brightness = clamped
    except _Skip as exc:
        return Converted(partition, row, reason=str(exc))
    star = Star(
        id=star_id,
        x=x,
        y=y,
        message=message,
        b0=brightness,
        t0=last_liked,
        likes=0,
        created_at=created_at,
        last_liked=last_liked,
    )
    return Converted(partition, row, star, notes=tuple(notes))


def _created(value: object, zone: tzinfo) -> float | None:
    """The original ``CreatedAt`` of a user (zone-less ISO text, or a number) as Unix seconds."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value) if value >= 0 else None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def convert_user(entity: Mapping[str, Any], options: Options, now: float) -> Converted[User]:
    """One original ``Users`` row as a user, with its address as found (checked in ``choose_users``)."""
    partition, row = str(entity.get("PartitionKey", "")), str(entity.get("RowKey", ""))
    notes: list[str] = []
    try:
        user_id = _id(row)
        name = entity.get("Username")
        if not isinstance(name, str):
            raise _Skip("Username is missing" if name is None else "Username is not text")
        try:
            name = check_name(name)
        except ValueError as exc:
            cleaned = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cs"))[:MAX_NAME]
            if not options.repair:
                raise _Skip(f"Username {exc}" + _REPAIR_HINT.format("cuts and cleans it")) from None
            try:
                name = check_name(cleaned)
            except ValueError:
                raise _Skip(f"Username {exc}, even once cleaned") from None
            notes.append(f"Username cut or cleaned ({exc})")
        email = entity.get("Email")
        email = email if isinstance(email, str) else ""
        created_at = _created(entity.get("CreatedAt"), options.timezone)
        if created_at is None:
            created_at = now
            notes.append("CreatedAt missing or unreadable: the time of the import")
    except _Skip as exc:
        return Converted(partition, row, reason=str(exc))
    user = User(id=user_id, name=name, email=email, created_at=created_at)
    return Converted(partition, row, user, notes=tuple(notes))


def choose_stars(converted: Iterable[Converted[Star]]) -> list[Converted[Star]]:
    """One row per id: the one liked last (then the lowest partition); the others skipped."""
    rows = list(converted)
    best: dict[str, Converted[Star]] = {}
    for item in rows:
        if item.value is None:
            continue
        held = best.get(item.value.id)
        if held is None or _newer(item, held):
            best[item.value.id] = item
    out = []
    for item in rows:
        if item.value is not None and best[item.value.id] is not item:
            winner = best[item.value.id]
            item = attrs.evolve(
                item, value=None, reason=f"the same id is in partition {winner.partition!r}, liked later"
            )
        out.append(item)
    return out


def _newer(item: Converted[Star], held: Converted[Star]) -> bool:
    assert item.value is not None and held.value is not None
    if item.value.last_liked != held.value.last_liked:
        return item.value.last_liked > held.value.last_liked
    return item.partition < held.partition


def choose_users(
    converted: Iterable[Converted[User]], options: Options, *, holders: Mapping[str, str] | None = None
) -> list[Converted[User]]:
    """Addresses made unique: the oldest holder keeps each; the rest skipped or given a placeholder.

    ``holders`` maps address keys already claimed in the target to their users (an
    address held by another user there is not taken from them).
    """
    rows = list(converted)
    holders = holders or {}
    valid: dict[int, str] = {}
    problems: dict[int, str] = {}
    for i, item in enumerate(rows):
        if item.value is None:
            continue
        try:
            valid[i] = check_email(item.value.email)
        except ValueError:
            problems[i] = f"the address {item.value.email!r} is not valid"
    order = sorted(valid, key=lambda i: (_created_of(rows[i]), rows[i].row))
    taken: dict[str, str] = {}
    for i in order:
        user = rows[i].value
        assert user is not None
        key = email_key(valid[i])
        holder = taken.get(key) or holders.get(key)
        if holder is not None and holder != user.id:
            problems[i] = f"the address {valid[i]!r} is held by the older user {holder!r}"
            continue
        taken[key] = user.id
    out = []
    for i, item in enumerate(rows):
        if item.value is not None and i in problems:
            if options.placeholder_emails:
                placeholder = f"{item.value.id}@{PLACEHOLDER_DOMAIN}"
                note = f"{problems[i]}: imported as {placeholder!r}"
                item = attrs.evolve(
                    item,
                    value=attrs.evolve(item.value, email=placeholder),
                    notes=(*item.notes, note),
                )
            else:
                item = attrs.evolve(
                    item, value=None, reason=problems[i] + " (--placeholder-emails imports it)"
                )
        elif item.value is not None:
            item = attrs.evolve(item, value=attrs.evolve(item.value, email=valid[i]))
        out.append(item)
    return out


def _created_of(item: Converted[User]) -> float:
    return item.value.created_at if item.value is not None else math.inf


def legacy_email(item: Converted[User], original: Mapping[str, Any]) -> str | None:
    """The original address of a user imported with a placeholder (kept on its entity)."""
    if item.value is None or not item.value.email.endswith("@" + PLACEHOLDER_DOMAIN):
        return None
    value = original.get("Email")
    return value if isinstance(value, str) else ""
