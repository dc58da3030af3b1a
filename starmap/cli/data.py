"""The data commands: ``init-tables``, ``import-legacy``, ``export`` and ``import``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from ..tools.report import print_report
from .common import run, with_logging

__all__ = ("export", "import_file", "import_legacy", "init_tables", "zone")


def init_tables(args: argparse.Namespace) -> int:
    """Create the tables that are missing (the service does this at start-up too)."""
    from ..backoff import retry
    from ..storage import TABLES, describe_store, open_store

    settings = with_logging()

    async def work() -> None:
        store = open_store(settings)
        try:
            await retry(lambda: store.ensure_tables(TABLES))
        finally:
            await store.close()

    run(work())
    print(f"tables ready in {describe_store(settings)}: {', '.join(TABLES)}")
    return 0


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {name!r} (an IANA name like Europe/Berlin)"
        ) from None


def import_legacy(args: argparse.Namespace) -> int:
    """Import the original service's stars and users; print what happened; 0 if all importable are in."""
    from ..legacy import Options
    from ..storage import describe_store, open_store
    from ..tools.legacy_import import import_legacy as run_import

    settings = with_logging()
    source_settings = settings
    if args.source_connection_string == "-":  # from standard input: kept out of the process list
        args.source_connection_string = sys.stdin.readline().strip()
    if args.source_connection_string:
        storage = attrs.evolve(
            settings.storage,
            connection_string=args.source_connection_string,
            use_managed_identity=False,
            table_prefix=args.source_table_prefix,
        )
        source_settings = attrs.evolve(settings, storage=storage)
        with contextlib.suppress(ValueError):  # the source's key never reaches a log line either
            from ..logs import RedactSecrets

            for handler in logging.getLogger().handlers:
                handler.addFilter(RedactSecrets(source_settings.secrets()))
    options = Options(repair=args.repair, placeholder_emails=args.placeholder_emails, timezone=args.timezone)
    same = source_settings is settings
    print(f"import-legacy: from {describe_store(source_settings)} into {describe_store(settings)}")

    async def work() -> Any:
        target = open_store(settings)
        source = target if same else open_store(source_settings)
        try:
            return await run_import(
                source,
                target,
                options,
                same_store=same,
                dry_run=args.dry_run,
                delete_source=args.delete_source,
            )
        finally:
            await target.close()
            if not same:
                await source.close()

    report = run(work())
    print_report(report, sys.stdout)
    if args.report:
        Path(args.report).write_text(json.dumps(attrs.asdict(report), indent=1) + "\n")
    return 0 if report.complete else 1


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout if "w" in mode else sys.stdin
        return
    with open(path, mode, encoding="utf-8") as handle:
        yield handle


def export(args: argparse.Namespace) -> int:
    """Every data table as JSON lines, to FILE or standard output."""
    from ..storage import open_store
    from ..tools.backup import export_tables

    settings = with_logging()

    async def work(out: IO[str]) -> dict[str, int]:
        store = open_store(settings)
        try:
            return await export_tables(store, out)
        finally:
            await store.close()

    with _open(args.file, "w") as out:
        counts = run(work(out))
    summary = ", ".join(f"{table} {count}" for table, count in counts.items())
    print(f"export: {summary} rows", file=sys.stderr)
    return 0


def import_file(args: argparse.Namespace) -> int:
    """Load an export: rows whose key is there already are left as they are (--replace overwrites)."""
    from ..storage import open_store
    from ..tools.backup import BadExport, import_tables, read_export

    settings = with_logging()
    try:
        with _open(args.file, "r") as handle:
            export = read_export(handle)
    except (OSError, BadExport, UnicodeDecodeError) as exc:
        print(f"starmap import: {args.file}: {exc}", file=sys.stderr)
        return 2

    async def work() -> Any:
        store = open_store(settings)
        try:
            return await import_tables(store, export, replace=args.replace)
        finally:
            await store.close()

    try:
        reports = run(work())
    except BadExport as exc:
        print(f"starmap import: {args.file}: {exc}", file=sys.stderr)
        return 2
    for table in reports:
        written = f"written {table.imported}, already there {table.already}"
        print(f"{table.table}: {table.found} rows in the file; {written}")
    return 0
