"""The original ``Users`` rows read as users, their addresses made unique (see ``starmap.legacy``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Final

import attrs

from ..rules import MAX_NAME, check_email, check_name
from ..users import User, email_key
from .rows import REPAIR_HINT, Converted, Options, Skip, cleaned, row_id

__all__ = ("PLACEHOLDER_DOMAIN", "choose_users", "convert_user", "legacy_email")

PLACEHOLDER_DOMAIN: Final = "legacy.invalid"  # .invalid is reserved (RFC 2606): it never delivers


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
        user_id = row_id(row)
        name = entity.get("Username")
        if not isinstance(name, str):
            raise Skip("Username is missing" if name is None else "Username is not text")
        try:
            name = check_name(name)
        except ValueError as exc:
            if not options.repair:
                raise Skip(f"Username {exc}" + REPAIR_HINT.format("cuts and cleans it")) from None
            try:
                name = check_name(cleaned(name, MAX_NAME))
            except ValueError:
                raise Skip(f"Username {exc}, even once cleaned") from None
            notes.append(f"Username cut or cleaned ({exc})")
        email = entity.get("Email")
        email = email if isinstance(email, str) else ""
        created_at = _created(entity.get("CreatedAt"), options.timezone)
        if created_at is None:
            created_at = now
            notes.append("CreatedAt missing or unreadable: the time of the import")
    except Skip as exc:
        return Converted(partition, row, reason=str(exc))
    user = User(id=user_id, name=name, email=email, created_at=created_at)
    return Converted(partition, row, user, notes=tuple(notes))


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
