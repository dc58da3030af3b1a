"""What reading any original row takes: the options, the outcome of a row, number and id rules."""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Mapping
from datetime import UTC, tzinfo
from typing import Any, Final, Generic, TypeVar

import attrs

from ..rules import check_id

__all__ = ("REPAIR_HINT", "Converted", "Options", "Skip", "cleaned", "number", "row_id")

T = TypeVar("T")

REPAIR_HINT: Final = " (--repair {})"


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


class Skip(Exception):
    """A row that cannot be imported; the message says why."""


def cleaned(text: str, limit: int, *, keep: Container[str] = ()) -> str:
    """What ``--repair`` makes of a text: control characters and lone surrogates dropped
    (but those in ``keep``), then cut to ``limit`` characters."""
    kept = "".join(c for c in text if c in keep or unicodedata.category(c) not in ("Cc", "Cs"))
    return kept[:limit]


def number(entity: Mapping[str, Any], name: str) -> float:
    """A Double (or an Int32, or numeric text) property; ``_Skip`` if missing or not a number."""
    if name not in entity or entity[name] is None:
        raise Skip(f"{name} is missing")
    value = entity[name]
    if isinstance(value, bool):
        raise Skip(f"{name} is a boolean, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise Skip(f"{name} is {value[:40]!r}, not a number") from None
    raise Skip(f"{name} is not a number")


def row_id(row: str) -> str:
    try:
        return check_id(row)
    except ValueError as exc:
        raise Skip(f"the id {exc}") from None
