"""Wire schemas: what HTTP accepts, validated by a private cattrs converter.

Strict where the contract is: numbers must be JSON numbers (not booleans, not
strings) and finite; strings must be strings. Unknown fields are ignored.
"""

from __future__ import annotations

from typing import Final, NewType

import attrs
import cattrs

from ..errors import ValidationFailed
from ..rules import (
    check_email,
    check_id,
    check_message,
    check_name,
    check_number,
)

__all__ = (
    "LikeIn",
    "StarIn",
    "UserIn",
    "check_id",
    "check_topics",
    "converter",
)

EntityId = NewType("EntityId", str)
Coordinate = NewType("Coordinate", float)
Message = NewType("Message", str)
BrightnessValue = NewType("BrightnessValue", float)
Name = NewType("Name", str)
Email = NewType("Email", str)


def check_topics(raw: str) -> frozenset[str]:
    """A ``topics`` query value: comma-separated names of known topics."""
    from ..events import TOPICS

    topics = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = topics - set(TOPICS)
    if not topics or unknown:
        raise ValidationFailed({"topics": f"must be a comma-separated subset of {', '.join(TOPICS)}"})
    return topics


@attrs.frozen
class StarIn:
    """The body of ``POST /stars``."""

    x: Coordinate
    y: Coordinate
    message: Message
    brightness: BrightnessValue = BrightnessValue(100.0)
    user_id: EntityId | None = None
    id: EntityId | None = None


@attrs.frozen
class UserIn:
    """The body of ``POST /users`` and ``PUT /users/{id}`` (both fields required)."""

    name: Name
    email: Email


@attrs.frozen
class LikeIn:
    """The optional body of ``POST /stars/{id}/like``."""

    user_id: EntityId | None = None


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(Coordinate, lambda v, _: check_number(v, -1.0, 1.0))
    conv.register_structure_hook(BrightnessValue, lambda v, _: check_number(v, 0.0, 100.0))
    conv.register_structure_hook(Message, lambda v, _: check_message(v))
    conv.register_structure_hook(EntityId, lambda v, _: check_id(v))
    conv.register_structure_hook(Name, lambda v, _: check_name(v))
    conv.register_structure_hook(Email, lambda v, _: check_email(v))
    return conv


converter: Final = _make_converter()
