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

from .rows import Converted, Options
from .stars import choose_stars, convert_star
from .users import PLACEHOLDER_DOMAIN, choose_users, convert_user, legacy_email

__all__ = (
    "PLACEHOLDER_DOMAIN",
    "Converted",
    "Options",
    "choose_stars",
    "choose_users",
    "convert_star",
    "convert_user",
    "legacy_email",
)
