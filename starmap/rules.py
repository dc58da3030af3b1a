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
from collections.abc import Callable
from typing import Final

__all__ = (
    "EMAIL_PATTERN",
    "ID_CHARS_PATTERN",
    "ID_PATTERN",
    "MAX_EMAIL",
    "MAX_ID",
    "MAX_MESSAGE",
    "MESSAGE_CONTROLS",
    "MESSAGE_PATTERN",
    "NAME_PATTERN",
    "MAX_NAME",
    "MIN_NAME",
    "RESERVED_IDS",
    "check_email",
    "check_id",
    "check_message",
    "check_name",
    "check_number",
    "json_type",
    "rounding",
)

MIN_NAME: Final = 2
MAX_NAME: Final = 100
MAX_EMAIL: Final = 254
MAX_MESSAGE: Final = 280
MAX_ID: Final = 64
# Paths under /stars/ that an id would shadow.
RESERVED_IDS: Final = frozenset({"active", "popular", "batch", "changes"})

# Each rule is one regular expression, written once: the validators below run it, and
# the OpenAPI document publishes the same string as the field's `pattern`. Both Python's
# `re` and ECMAScript read it the same way. `(?!\n)$` ends a pattern whose characters
# exclude a newline: Python's `$` alone would also match before a final "\n".
_CONTROLS: Final = "\\u0000-\\u001f\\u007f-\\u009f"
_SURROGATES: Final = "\\ud800-\\udfff"
# Characters that show nothing: zero-width and joiners, bidirectional controls, the soft
# hyphen, the grapheme joiner, Hangul and braille blanks, the BOM. Text made only of these
# (and white space) looks empty; an address with them looks like another address.
_INVISIBLE: Final = (
    "\\u00ad\\u034f\\u115f\\u1160\\u180e\\u200b-\\u200f\\u202a-\\u202e"
    "\\u2060-\\u2064\\u2066-\\u2069\\u2800\\u3164\\ufeff\\uffa0"
)
_MESSAGE_CHAR: Final = "[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f" + _SURROGATES + "]"
# Any text but control characters (newline and tab allowed) and lone surrogates, with at
# least one character that shows.
MESSAGE_PATTERN: Final = (
    f"^{_MESSAGE_CHAR}*[^\\s\\u0000-\\u001f\\u007f-\\u009f{_SURROGATES}{_INVISIBLE}]{_MESSAGE_CHAR}*$"
)
# No control characters, at least one character that shows.
NAME_PATTERN: Final = (
    f"^[^{_CONTROLS}{_SURROGATES}]*[^{_CONTROLS}{_SURROGATES}{_INVISIBLE}\\s]"
    f"[^{_CONTROLS}{_SURROGATES}]*(?!\\n)$"
)
# One @, a local part of 1 to 64 characters without spaces, controls or invisible
# characters, a dotted domain of non-empty labels; white space around it is allowed
# (and trimmed). Accepted addresses are stored in Unicode NFC, so one address is one key.
EMAIL_PATTERN: Final = (
    f"^\\s*[^@\\s{_CONTROLS}{_SURROGATES}{_INVISIBLE}]{{1,64}}@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+\\s*$"
)
# Letters, digits, '_' and '-', not one of the reserved words (ID_CHARS: the characters only).
ID_CHARS_PATTERN: Final = f"^[A-Za-z0-9_-]{{1,{MAX_ID}}}(?!\\n)$"
ID_PATTERN: Final = "^(?!(" + "|".join(sorted(RESERVED_IDS)) + ")(?!\\n)$)" + ID_CHARS_PATTERN[1:]

_MESSAGE: Final = re.compile(MESSAGE_PATTERN)
_NAME: Final = re.compile(NAME_PATTERN)
_EMAIL: Final = re.compile(EMAIL_PATTERN)
_ID: Final = re.compile(ID_PATTERN)
# The control characters a message may hold.
MESSAGE_CONTROLS: Final = frozenset("\n\t")


def json_type(value: object) -> str:
    """How a JSON reader names the type of ``value`` (never a Python type name)."""
    names = {bool: "a boolean", str: "a string", list: "an array", dict: "an object", type(None): "null",
             int: "a number", float: "a number"}  # fmt: skip
    return names.get(type(value), "another kind of value")


def check_number(value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        number = math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"must be a number from {low:g} to {high:g}")
    return number


def check_id(value: object) -> str:
    """An id as API.md allows it: ``[A-Za-z0-9_-]{1,64}``, not a reserved path word."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not _ID.search(value):
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} is reserved")
        raise ValueError("must be 1 to 64 characters: letters, digits, '_' or '-'")
    return value


def check_message(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not 1 <= len(value) <= MAX_MESSAGE:
        raise ValueError(f"must be 1 to {MAX_MESSAGE} characters, not {len(value)}")
    if not _MESSAGE.search(value):
        if any(unicodedata.category(c) == "Cs" for c in value):
            raise ValueError("must be valid Unicode (no lone surrogates)")
        if any(unicodedata.category(c) == "Cc" and c not in MESSAGE_CONTROLS for c in value):
            raise ValueError("must not contain control characters other than newline and tab")
        raise ValueError("must contain at least one visible character")
    return value


def check_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if not MIN_NAME <= len(value) <= MAX_NAME or not value.strip():
        raise ValueError(f"must be {MIN_NAME} to {MAX_NAME} characters, not only spaces")
    if not _NAME.search(value):
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
            raise ValueError("must not contain control characters")
        raise ValueError("must contain at least one visible character")
    return value


def check_email(value: object) -> str:
    """The address, trimmed; ``ValueError`` unless it looks like one."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {json_type(value)}")
    if len(value) > MAX_EMAIL or not _EMAIL.search(value):
        raise ValueError("must be an e-mail address like name@example.org (no invisible characters)")
    return unicodedata.normalize("NFC", value.strip())


# 1.5 * 2**52: a double of magnitude under 2**51 plus this lands where the doubles are the
# integers, so the addition rounds it to an integer (half to even, as ``round``) and the
# subtraction is exact: ``(x + _TO_INTEGER) - _TO_INTEGER == round(x)``, in float arithmetic.
_TO_INTEGER: Final = 6755399441055744.0


def rounding(digits: int) -> Callable[[float], float]:
    """A function giving ``round(value, digits)`` by scaling: ``round`` with digits goes through a
    decimal string and back (~3,000 instructions), and every like rounds five times (the
    answer and its event, twice each; an access line, once). Its result is round's (the double
    nearest k / 10**digits) but for an input within an ulp of a half, where the scaled value's
    rounding decides. The scaled value is rounded in float arithmetic (``_TO_INTEGER``):
    ``round(scaled)`` made an int and divided it back, ~700 instructions more. NaN, the
    infinities and values too large to scale go through ``round`` itself."""
    scale = float(10**digits)

    def rounded(value: float) -> float:
        scaled = value * scale
        if -1e15 < scaled < 1e15:  # NaN and the infinities fail both; 1e15 < 2**51
            return ((scaled + _TO_INTEGER) - _TO_INTEGER) / scale
        return round(value, digits)

    return rounded
