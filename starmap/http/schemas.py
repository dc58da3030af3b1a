"""Wire schemas: what HTTP accepts, validated by a private cattrs converter.

Strict where the contract is: numbers must be JSON numbers (not booleans, not
strings) and finite; strings must be strings. Unknown fields are ignored.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Final, NewType

import attrs
import cattrs

from ..errors import ValidationFailed

__all__ = ("RESERVED_IDS", "LikeIn", "StarIn", "UserIn", "check_id", "check_topics", "converter")

EntityId = NewType("EntityId", str)
Coordinate = NewType("Coordinate", float)
Message = NewType("Message", str)
BrightnessValue = NewType("BrightnessValue", float)
Name = NewType("Name", str)
Email = NewType("Email", str)

MIN_NAME: Final = 2
MAX_NAME: Final = 100
MAX_EMAIL: Final = 254
# One @, a local part without spaces, a dotted domain of non-empty labels.
EMAIL: Final = re.compile(r"[^@\s\x00-\x1f\x7f]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_MESSAGE: Final = 280
# Paths under /stars/ that an id would shadow.
RESERVED_IDS: Final = frozenset({"active", "popular", "batch"})
_ALLOWED_CONTROLS: Final = frozenset("\n\t")


def _number(value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {_json_type(value)}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"must be a number from {low:g} to {high:g}")
    return number


def _json_type(value: object) -> str:
    names = {bool: "a boolean", str: "a string", list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_id(value: object) -> str:
    """An id as API.md allows it: ``[A-Za-z0-9_-]{1,64}``, not a reserved path word."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_json_type(value)}")
    if not ID_PATTERN.fullmatch(value):
        raise ValueError("must be 1 to 64 characters: letters, digits, '_' or '-'")
    if value in RESERVED_IDS:
        raise ValueError(f"{value!r} is reserved")
    return value


def check_topics(raw: str) -> frozenset[str]:
    """A ``topics`` query value: comma-separated names of known topics."""
    from ..events import TOPICS

    topics = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = topics - set(TOPICS)
    if not topics or unknown:
        raise ValidationFailed({"topics": f"must be a comma-separated subset of {', '.join(TOPICS)}"})
    return topics


def _message(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_json_type(value)}")
    if not 1 <= len(value) <= MAX_MESSAGE:
        raise ValueError(f"must be 1 to {MAX_MESSAGE} characters, not {len(value)}")
    categories = {unicodedata.category(c) for c in value if not c.isprintable()}
    if "Cs" in categories:
        raise ValueError("must be valid Unicode (no lone surrogates)")
    if any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in value):
        raise ValueError("must not contain control characters other than newline and tab")
    return value


@attrs.frozen
class StarIn:
    """The body of ``POST /stars``."""

    x: Coordinate
    y: Coordinate
    message: Message
    brightness: BrightnessValue = BrightnessValue(100.0)
    user_id: EntityId | None = None
    id: EntityId | None = None


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_json_type(value)}")
    if not MIN_NAME <= len(value) <= MAX_NAME or not value.strip():
        raise ValueError(f"must be {MIN_NAME} to {MAX_NAME} characters, not only spaces")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must not contain control characters")
    return value


def _email(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_json_type(value)}")
    address = value.strip()
    if not EMAIL.fullmatch(address) or len(address) > MAX_EMAIL or len(address.partition("@")[0]) > 64:
        raise ValueError("must be an e-mail address like name@example.org")
    return address


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
    conv.register_structure_hook(Coordinate, lambda v, _: _number(v, -1.0, 1.0))
    conv.register_structure_hook(BrightnessValue, lambda v, _: _number(v, 0.0, 100.0))
    conv.register_structure_hook(Message, lambda v, _: _message(v))
    conv.register_structure_hook(EntityId, lambda v, _: check_id(v))
    conv.register_structure_hook(Name, lambda v, _: _name(v))
    conv.register_structure_hook(Email, lambda v, _: _email(v))
    return conv


converter: Final = _make_converter()
