"""``starmap export`` / ``starmap import``: every data table as JSON lines.

The file: a header line ``{"starmap_export": 1, "version", "exported_at", "tables",
"star_partitions"}`` (the last: how the exported ``Stars`` rows are partitioned; 32 when
absent, as in exports made before tables recorded it),
then one line per row, ``{"table": …, "entity": {"PartitionKey", "RowKey", …}}``,
every property as stored (ids, likes, batch ids and rows of other layouts included).
JSON has no NaN or infinity: such a Double is written as ``{"$double": "NaN"}``. Types the
store protocol does not carry (DateTime, Guid, Binary: only rows edited by hand have
them) are written as text, and the export says how many.

An import checks the whole file before it writes anything, then inserts row by row
in atomic batches of one partition; a row whose key is already there is left as it is
(``replace`` overwrites it instead), so importing a file twice changes nothing. Running
replicas are asked to reload when it is done. Rows keep their keys, so the stars of an
export go only into a store partitioned as they are: an empty one takes on the export's
count, any other must have it already.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Iterator
from typing import IO, Any, Final

import attrs

from .. import __version__
from ..backoff import retry
from ..control import request_reload, star_partitions
from ..errors import AlreadyExists
from ..progress import Progress
from ..stars import BUCKETS, STARS, StarPartitions
from ..storage import DATA_TABLES, TABLES, Op, TableStore, iter_entities, partition_chunks
from ..storage.base import check_entity
from .legacy_import import TableReport

__all__ = ("BadExport", "Export", "export_tables", "import_tables", "read_export")

log = logging.getLogger("starmap.backup")

FORMAT: Final = 1
_SPECIAL: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class BadExport(ValueError):
    """The file is not an export this version can read; the message names the line."""


def _encode(value: Any) -> tuple[Any, bool]:
    """A property as JSON, and whether it had to become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$double": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}, False
    if value is None or isinstance(value, str | int | float | bool):
        return value, False
    return str(value.isoformat() if hasattr(value, "isoformat") else value), True


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$double"} and value["$double"] in _SPECIAL:
            return _SPECIAL[value["$double"]]
        raise ValueError(f"an object where a value belongs: {sorted(value)}")
    return value


async def export_tables(store: TableStore, out: IO[str]) -> dict[str, int]:
    """Write every data table to ``out``; rows per table."""
    header = {
        "starmap_export": FORMAT,
        "version": __version__,
        "exported_at": time.time(),
        "tables": list(DATA_TABLES),
        "star_partitions": (await star_partitions(store, record=False)).count,
    }
    out.write(json.dumps(header) + "\n")
    counts: dict[str, int] = {}
    as_text = 0
    for table in DATA_TABLES:
        counts[table] = 0
        async for row in iter_entities(store, table):
            entity = {}
            for name, value in row.entity.items():
                entity[name], became_text = _encode(value)
                as_text += became_text
            out.write(json.dumps({"table": table, "entity": entity}, ensure_ascii=False) + "\n")
            counts[table] += 1
    if as_text:
        log.warning(
            "%d values of types the store does not carry (DateTime, Guid, Binary) written as text", as_text
        )
    return counts


@attrs.frozen
class _Row:
    table: str
    entity: dict[str, Any]


@attrs.frozen
class Export:
    star_partitions: StarPartitions
    rows: list[_Row]


def read_export(lines: Iterator[str]) -> Export:
    """An export's rows, each checked; ``BadExport`` naming the first bad line."""
    lines = iter(lines)
    header = next(lines, None)
    if header is None:
        raise BadExport("the file is empty")
    record = _json(header, 1)
    if not isinstance(record, dict) or record.get("starmap_export") != FORMAT:
        raise BadExport(f"line 1: not a Star Map export of format {FORMAT} (see `starmap export`)")
    count = record.get("star_partitions", BUCKETS)
    try:
        partitions = StarPartitions(count)
    except ValueError:
        raise BadExport(f"line 1: 'star_partitions' must be a whole number 1-100, not {count!r}") from None
    return Export(partitions, list(_read_rows(lines)))


def _json(line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadExport(f"line {number}: not JSON ({exc.msg})") from None


def _read_rows(lines: Iterator[str]) -> Iterator[_Row]:
    """The rows after the header line, each checked."""
    seen: set[tuple[str, str, str]] = set()
    for number, line in enumerate(lines, 2):
        record = _json(line, number)
        if not isinstance(record, dict) or record.get("table") not in DATA_TABLES:
            raise BadExport(
                f"line {number}: expected {{'table': one of {', '.join(DATA_TABLES)}, 'entity': …}}"
            )
        entity = record.get("entity")
        if not isinstance(entity, dict):
            raise BadExport(f"line {number}: 'entity' must be an object")
        try:
            decoded = {name: _decode(value) for name, value in entity.items()}
            row = _Row(record["table"], check_entity(decoded))
        except (TypeError, ValueError) as exc:
            raise BadExport(f"line {number}: {exc}") from None
        key = (row.table, row.entity["PartitionKey"], row.entity["RowKey"])
        if key in seen:
            raise BadExport(f"line {number}: a second row for {key[0]} ({key[1]!r}, {key[2]!r})")
        seen.add(key)
        yield row


async def import_tables(store: TableStore, export: Export, *, replace: bool = False) -> list[TableReport]:
    """Write checked rows: inserts in batches per partition (or upserts with ``replace``).

    ``BadExport``, and nothing written, when the store's stars are partitioned otherwise.
    """
    rows = export.rows
    await retry(lambda: store.ensure_tables(TABLES))
    target = await retry(lambda: star_partitions(store, proposed=export.star_partitions.count))
    if target != export.star_partitions and any(row.table == STARS for row in rows):
        raise BadExport(
            f"the exported stars are spread over {export.star_partitions.count} partitions and this "
            f"store's over {target.count}: import into an empty store (another DATA_DIR or "
            "STORAGE_TABLE_PREFIX)"
        )
    reports = {table: TableReport(table) for table in DATA_TABLES}
    for row in rows:
        reports[row.table].found += 1
    with Progress("import", len(rows), log=log) as progress:
        for table, report in reports.items():
            entities = [row.entity for row in rows if row.table == table]
            for chunk in partition_chunks(entities, lambda entity: str(entity["PartitionKey"])):
                try:
                    ops = [Op("upsert" if replace else "insert", e) for e in chunk]
                    await retry(functools.partial(store.batch, table, ops))
                    report.imported += len(chunk)
                except AlreadyExists:  # some keys are there already: the others one by one
                    for entity in chunk:
                        try:
                            await retry(functools.partial(store.insert, table, entity))
                            report.imported += 1
                        except AlreadyExists:
                            report.already += 1
                progress.advance(len(chunk))
    await request_reload(store, "import")
    return list(reports.values())
