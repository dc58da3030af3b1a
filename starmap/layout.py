"""Which rows of a table this service wrote, and what to do with the others.

Every entity Star Map writes carries ``layout = LAYOUT``. Rows written before that
marker existed are recognised by their shape: the partition this service derives
from the id and the properties it always writes. Anything else is foreign: rows of
the original service (no marker, its own shape: see ``starmap.legacy``), rows of a
newer layout (a marker above ``LAYOUT``, from a later version of this service), or
rows edited by hand past recognition. Foreign rows are counted and left alone:
loading never fails on them, and nothing but ``starmap import-legacy
--delete-source`` ever deletes them.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Container, Mapping
from typing import Any, Final, Generic, TypeVar

__all__ = ("LAYOUT", "LAYOUT_PROPERTY", "Census", "RowKind", "classify", "read_row")

T = TypeVar("T")

LAYOUT_PROPERTY: Final = "layout"
LAYOUT: Final = 1
IMPORT_HINT: Final = "starmap import-legacy (see what it would do first with --dry-run)"


class RowKind(enum.Enum):
    CURRENT = "current"  # this service's layout
    ORIGINAL = "original"  # no layout marker and not this service's shape
    NEWER = "newer"  # a layout marker this version does not know


def _marked(entity: Mapping[str, Any]) -> RowKind | None:
    """The kind a row's layout marker says (a bool is no layout); None: the row has no marker."""
    layout = entity.get(LAYOUT_PROPERTY)
    if layout is None:
        return None
    return RowKind.CURRENT if type(layout) is int and layout == LAYOUT else RowKind.NEWER


def classify(entity: Mapping[str, Any], *, partition: str, required: Collection[str]) -> RowKind:
    """The kind of a row whose own partition (as this service derives it) is ``partition``."""
    if (kind := _marked(entity)) is not None:
        return kind
    if entity.get("PartitionKey") == partition and all(name in entity for name in required):
        return RowKind.CURRENT  # written before the marker existed
    return RowKind.ORIGINAL


def read_row(
    entity: dict[str, Any], *, partition: str, required: Collection[str], parse: Callable[[dict[str, Any]], T]
) -> T | None:
    """The row parsed if this service wrote it and can read it; None for any other row."""
    if classify(entity, partition=partition, required=required) is not RowKind.CURRENT:
        return None
    try:
        return parse(entity)
    except (KeyError, TypeError, ValueError):
        return None


class Census(Generic[T]):
    """Reads the rows of one table as they are loaded: this service's parsed, the rest counted."""

    def __init__(
        self,
        table: str,
        *,
        partition: Callable[[str], str],
        required: Collection[str],
        parse: Callable[[dict[str, Any]], T],
    ) -> None:
        self.table = table
        self._partition = partition
        self._required = required
        self._parse = parse
        self.current = 0
        self.original_ids: list[str] = []
        self.newer = 0
        self.unreadable = 0

    def take(self, entity: dict[str, Any]) -> T | None:
        """The parsed row if this service wrote it; None (and counted) otherwise."""
        row_key = str(entity.get("RowKey", ""))
        kind = _marked(entity)
        if kind is None:  # no marker: only then is the partition derived (a CRC per row)
            kind = classify(entity, partition=self._partition(row_key), required=self._required)
        if kind is RowKind.ORIGINAL:
            self.original_ids.append(row_key)
            return None
        if kind is RowKind.NEWER:
            self.newer += 1
            return None
        try:
            parsed = self._parse(entity)
        except (KeyError, TypeError, ValueError):
            self.unreadable += 1  # this service's partition and marker, but edited past reading
            return None
        self.current += 1
        return parsed

    def summary(self, loaded: Container[str]) -> dict[str, int]:
        """Counts of the foreign rows; ``loaded``: the ids this service holds (imported ones among them)."""
        imported = sum(row_id in loaded for row_id in self.original_ids)
        return {
            "not_imported": len(self.original_ids) - imported,
            "imported_source_kept": imported,
            "newer_layout": self.newer,
            "unreadable": self.unreadable,
        }

    def log(self, logger: logging.Logger, loaded: Container[str]) -> None:
        """One WARNING line when rows were left alone; an INFO line for imported sources kept."""
        counts = self.summary(loaded)
        left = counts["not_imported"] + counts["newer_layout"] + counts["unreadable"]
        if left:
            logger.warning(
                "%s: %d rows in a layout this service does not know were left alone "
                "(%d without a layout version, as the original service wrote them; %d of a newer "
                "layout; %d unreadable); import the original service's rows with: %s",
                self.table,
                left,
                counts["not_imported"],
                counts["newer_layout"],
                counts["unreadable"],
                IMPORT_HINT,
            )
        if counts["imported_source_kept"]:
            logger.info(
                "%s: %d rows of the original service are kept beside their imports "
                "(starmap import-legacy --delete-source removes them)",
                self.table,
                counts["imported_source_kept"],
            )
