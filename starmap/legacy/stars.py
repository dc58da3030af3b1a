"""The original ``Stars`` rows read as stars (see ``starmap.legacy`` for the rules)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from ..rules import MAX_MESSAGE, MESSAGE_CONTROLS, check_message
from ..stars import Star
from .rows import REPAIR_HINT, Converted, Options, Skip, cleaned, number, row_id

__all__ = ("choose_stars", "convert_star")

STAR_PARTITION: Final = re.compile(r"STAR_(\d{4})(\d{2})")


def _coordinate(entity: Mapping[str, Any], name: str, repair: bool, notes: list[str]) -> float:
    value = number(entity, name)
    if not math.isfinite(value):
        raise Skip(f"{name} is {value}, not a finite number")
    if -1.0 <= value <= 1.0:
        return value
    if not repair:
        raise Skip(f"{name} {value:g} is outside [-1, 1]" + REPAIR_HINT.format("clamps it"))
    clamped = min(1.0, max(-1.0, value))
    notes.append(f"{name} {value:g} clamped to {clamped:g}")
    return clamped


def _message(entity: Mapping[str, Any], repair: bool, notes: list[str]) -> str:
    value = entity.get("Message")
    if value is None:
        raise Skip("Message is missing")
    if not isinstance(value, str):
        raise Skip("Message is not text")
    if not value.strip():
        raise Skip("Message is empty")
    try:
        return check_message(value)
    except ValueError as exc:
        problem = str(exc)
    if not repair:
        raise Skip(f"Message {problem}" + REPAIR_HINT.format("cuts and cleans it"))
    message = cleaned(value, MAX_MESSAGE, keep=MESSAGE_CONTROLS)
    if not message.strip():
        raise Skip(f"Message {problem}, and nothing is left once cleaned")
    notes.append(f"Message cut or cleaned ({problem})")
    return check_message(message)


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
        value = number(entity, name)
    except Skip:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def convert_star(entity: Mapping[str, Any], options: Options) -> Converted[Star]:
    """One original ``Stars`` row as a star of this service, or the reason it cannot be one."""
    partition, row = str(entity.get("PartitionKey", "")), str(entity.get("RowKey", ""))
    notes: list[str] = []
    try:
        star_id = row_id(row)
        x = _coordinate(entity, "X", options.repair, notes)
        y = _coordinate(entity, "Y", options.repair, notes)
        message = _message(entity, options.repair, notes)
        created_at = _time(entity, "CreatedAt")
        if created_at is None:
            created_at = _month_start(partition)
            if created_at is None:
                raise Skip("CreatedAt is missing and the partition names no month")
            notes.append("CreatedAt missing: the first instant of its partition's month")
        last_liked = _time(entity, "LastLiked")
        if last_liked is None:
            last_liked = created_at
            notes.append("LastLiked missing: its creation time")
        try:
            brightness, why = number(entity, "Brightness"), "Brightness is NaN"
        except Skip as exc:
            brightness, why = math.nan, str(exc)
        if math.isnan(brightness):
            notes.append(f"{why}: imported at the minimum brightness")
            brightness = 0.0
        elif not 0.0 <= brightness <= 100.0:
            clamped = min(100.0, max(0.0, brightness))
            notes.append(f"Brightness {brightness:g} clamped to {clamped:g}")
            brightness = clamped
    except Skip as exc:
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
