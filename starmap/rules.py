"""The rules of a star's and a user's fields, in one place.

The HTTP wire schemas (``starmap.http.schemas``) and the importer of the original
service's data (``starmap.legacy``) both check values with these functions, so a
star or a user is valid by one definition whichever way it arrives. Each check
returns the value it accepts or raises ``ValueError`` with a message fit for people.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Final

__all__ = (
    "EMAIL",
    "ID_PATTERN",
    "MAX_EMAIL",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MIN_NAME",
    "RESERVED_IDS",
    "check_email",
    "check_id",
    "check_message",
    "check_name",
    "check_number",
    "json_type",
)

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


def json_type(value: object) -> str:
    """How a JSON reader names the type of ``value``."""
    names = {bool: "a boolean", str: "a string", list: "an array", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_number(value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {json_type(value)}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"must be a number from {low:g} to {high:g}")
    return number


def check_id(value: object) -> str:
    """An id as API.md allows it: ``[A-Za-z0-9_-]{1,64}``, not a reserved path word."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not ID_PATTERN.fullmatch(value):
        raise ValueError("must be 1 to 64 characters: letters, digits, '_' or '-'")
    if value in RESERVED_IDS:
        raise ValueError(f"{value!r} is reserved")
    return value


def check_message(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not 1 <= len(value) <= MAX_MESSAGE:
        raise ValueError(f"must be 1 to {MAX_MESSAGE} characters, not {len(value)}")
    categories = {unicodedata.category(c) for c in value if not c.isprintable()}
    if "Cs" in categories:
        raise ValueError("must be valid Unicode (no lone surrogates)")
    if any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS for c in value):
        raise ValueError("must not contain control characters other than newline and tab")
    return value


def check_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not MIN_NAME <= len(value) <= MAX_NAME or not value.strip():
        raise ValueError(f"must be {MIN_NAME} to {MAX_NAME} characters, not only spaces")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must not contain control characters")
    return value


def check_email(value: object) -> str:
    """The address, trimmed; ``ValueError`` unless it looks like one."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    address = value.strip()
    if not EMAIL.fullmatch(address) or len(address) > MAX_EMAIL or len(address.partition("@")[0]) > 64:
        raise ValueError("must be an e-mail address like name@example.org")
    return address
