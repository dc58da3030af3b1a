"""What an import did, table by table and row by row, and how it is printed."""

from __future__ import annotations

from typing import IO

import attrs

from ..logs import escape_controls

__all__ = ("ImportReport", "TableReport", "print_report")


@attrs.define
class TableReport:
    """What happened to one table's original rows."""

    table: str
    found: int = 0
    imported: int = 0
    already: int = 0
    skipped: list[tuple[str, str, str]] = attrs.Factory(list)  # (partition, row, reason)
    notes: list[tuple[str, str, str]] = attrs.Factory(list)  # imported, with what was changed
    failed: list[tuple[str, str, str]] = attrs.Factory(list)
    source_deleted: int = 0
    source_kept: list[tuple[str, str, str]] = attrs.Factory(list)

    @property
    def to_import(self) -> int:
        return self.found - len(self.skipped)


@attrs.define
class ImportReport:
    dry_run: bool
    tables: list[TableReport]

    @property
    def complete(self) -> bool:
        """Every importable row is in the target (or, in a dry run, nothing stands in the way)."""
        return not any(t.failed for t in self.tables)


def print_report(report: ImportReport, out: IO[str]) -> None:
    """The summary people read: per table what happened, then each row skipped, noted, failed or kept."""
    verb = "would import" if report.dry_run else "imported"
    if report.dry_run:
        print("dry run: nothing was written", file=out)
    for table in report.tables:
        line = (
            f"{table.table}: {table.found} rows of the original service; {verb} {table.imported}, "
            f"already there {table.already}, skipped {len(table.skipped)}"
        )
        if table.failed:
            line += f", FAILED {len(table.failed)}"
        if table.source_deleted or table.source_kept:
            line += f"; source rows deleted {table.source_deleted}, kept {len(table.source_kept)}"
        print(line, file=out)
        for what, rows in (("skipped", table.skipped), ("note", table.notes), ("failed", table.failed),
                           ("source kept", table.source_kept)):  # fmt: skip
            for partition, row, reason in rows:
                where = f"{escape_controls(partition)}/{escape_controls(row)}"
                print(f"  {what} {where}: {escape_controls(reason)}", file=out)
    if report.complete:
        done = "nothing stands in the way" if report.dry_run else "every importable row is in"
        print(f"import-legacy: {done}; running replicas reload within STORAGE_RELOAD_POLL_SECONDS", file=out)
    else:
        print("import-legacy: INCOMPLETE: run it again once the store answers", file=out)
