"""``starmap``: the service and the tools to run it (``starmap --help``; ``python -m starmap`` serves).

Exit codes: 0 done; 1 failed (a store that does not answer, an import left incomplete,
a probe that failed); 2 a bad setting or argument, named in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from datetime import tzinfo
from pathlib import Path
from typing import IO, Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from . import __version__
from .errors import SettingsError, StarmapError
from .settings import Settings, describe_settings, load_settings

__all__ = ("main",)

log = logging.getLogger("starmap")

T = TypeVar("T")
PROBE_TIMEOUT: Final = 3.0
ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared, not bound


def _settings() -> Settings:
    """The settings, or exit 2 with the one line that names the bad variable."""
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        print(f"starmap: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _with_logging() -> Settings:
    from .logs import configure_logging

    settings = _settings()
    configure_logging(settings)
    return settings


def _run(work: Awaitable[T]) -> T:
    """Run a tool's coroutine; a store that cannot be reached exits 1 with one line."""
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except StarmapError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None


def _printable(text: str) -> str:
    """Text from a table, safe to print: control characters escaped (no forged lines)."""
    return "".join(
        c
        if unicodedata.category(c) not in ("Cc", "Cs")
        else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


# -- serve, dev -------------------------------------------------------------------------


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio, a faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or SIGINT."""
    from aiohttp import web

    from .app import create_app
    from .logs import AccessLogger
    from .storage import describe_store

    settings = _with_logging()
    server = settings.server
    log.info(
        "%s %s (%s) on http://%s:%d, storage: %s",
        server.project_name,
        settings.version,
        server.environment.value,
        server.host,
        server.port,
        describe_store(settings),
    )
    loop = _event_loop()
    loop.set_debug(server.debug)  # DEBUG=true: asyncio's slow-callback and never-awaited warnings
    try:
        web.run_app(
            create_app(settings),
            host=server.host,
            port=server.port,
            shutdown_timeout=server.shutdown_timeout,
            access_log_class=AccessLogger,
            backlog=1024,  # thousands of event streams may (re)connect at once
            loop=loop,
            print=None,
        )
    except StarmapError as exc:
        log.error("start-up failed: %s", exc)
        return 1
    return 0


def dev(args: argparse.Namespace) -> int:
    """Serve, and restart whenever a file of the package changes (watchfiles)."""
    from watchfiles import run_process

    _settings()  # a bad setting is one clear line here, not a restart loop
    package = Path(__file__).resolve().parent
    print(f"starmap dev: serving; restarting on changes under {package}", file=sys.stderr)
    run_process(package, target=f"{sys.executable} -m starmap serve", target_type="command")
    return 0


# -- configuration and tables ------------------------------------------------------------


def check_config(args: argparse.Namespace) -> int:
    """Print every setting as it takes effect, secrets redacted, and where it came from."""
    settings = _settings()
    rows = describe_settings(settings, os.environ)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {_printable(value)}  ({source})")
    from .storage import describe_store

    print(f"\nstorage: {describe_store(settings)}; redis: {settings.redis.host or 'not configured'}")
    return 0


def init_tables(args: argparse.Namespace) -> int:
    """Create the tables that are missing (the service does this at start-up too)."""
    from .backoff import retry
    from .storage import TABLES, describe_store, open_store

    settings = _with_logging()

    async def work() -> None:
        store = open_store(settings)
        try:
            await retry(lambda: store.ensure_tables(TABLES))
        finally:
            await store.close()

    _run(work())
    print(f"tables ready in {describe_store(settings)}: {', '.join(TABLES)}")
    return 0


# -- import-legacy ------------------------------------------------------------------------


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown time zone {name!r} (an IANA name like Europe/Berlin)"
        ) from None


def import_legacy(args: argparse.Namespace) -> int:
    """Import the original service's stars and users; print what happened; 0 if all importable are in."""
    from .legacy import Options
    from .storage import describe_store, open_store
    from .tools.legacy_import import import_legacy as run_import

    settings = _with_logging()
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
            from .logs import RedactSecrets

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

    report = _run(work())
    _print_report(report, sys.stdout)
    if args.report:
        Path(args.report).write_text(json.dumps(attrs.asdict(report), indent=1) + "\n")
    return 0 if report.complete else 1


def _print_report(report: Any, out: IO[str]) -> None:
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
                print(f"  {what} {_printable(partition)}/{_printable(row)}: {_printable(reason)}", file=out)
    if report.complete:
        done = "nothing stands in the way" if report.dry_run else "every importable row is in"
        print(f"import-legacy: {done}; running replicas reload within STORAGE_RELOAD_POLL_SECONDS", file=out)
    else:
        print("import-legacy: INCOMPLETE: run it again once the store answers", file=out)


# -- export, import -------------------------------------------------------------------------


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout if "w" in mode else sys.stdin
        return
    with open(path, mode, encoding="utf-8") as handle:
        yield handle


def export(args: argparse.Namespace) -> int:
    """Every data table as JSON lines, to FILE or standard output."""
    from .storage import open_store
    from .tools.backup import export_tables

    settings = _with_logging()

    async def work(out: IO[str]) -> dict[str, int]:
        store = open_store(settings)
        try:
            return await export_tables(store, out)
        finally:
            await store.close()

    with _open(args.file, "w") as out:
        counts = _run(work(out))
    summary = ", ".join(f"{table} {count}" for table, count in counts.items())
    print(f"export: {summary} rows", file=sys.stderr)
    return 0


def import_file(args: argparse.Namespace) -> int:
    """Load an export: rows whose key is there already are left as they are (--replace overwrites)."""
    from .storage import open_store
    from .tools.backup import BadExport, import_tables, read_export

    settings = _with_logging()
    try:
        with _open(args.file, "r") as handle:
            rows = list(read_export(handle))
    except (OSError, BadExport, UnicodeDecodeError) as exc:
        print(f"starmap import: {args.file}: {exc}", file=sys.stderr)
        return 2

    async def work() -> Any:
        store = open_store(settings)
        try:
            return await import_tables(store, rows, replace=args.replace)
        finally:
            await store.close()

    for table in _run(work()):
        written = f"written {table.imported}, already there {table.already}"
        print(f"{table.table}: {table.found} rows in the file; {written}")
    return 0


# -- probe -----------------------------------------------------------------------------------


def probe(args: argparse.Namespace) -> int:
    """GET /health/liveness or /health/readiness of the local service: exit 0 on 200, else 1."""
    if args.url:
        base = args.url.rstrip("/")
    else:
        server = _settings().server
        host = "127.0.0.1" if server.host in ANY_ADDRESS else server.host
        base = f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"
    url = f"{base}/health/{args.which}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:  # noqa: S310 - our own URL
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"starmap probe {args.which}: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"starmap probe {args.which}: {url}: {status}")
    return 0 if status == 200 else 1


# -- the parser --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="starmap",
        description="Star Map: the backend of a shared, live sky map. Settings come from the environment "
        "(see README.md); with no command, it serves.",
    )
    parser.add_argument("--version", action="version", version=f"starmap {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=func.__doc__)
        sub.set_defaults(func=func)
        return sub

    command("serve", serve, "run the service (the default)")
    command("dev", dev, "run the service, restarting it when the code changes")
    command("check-config", check_config, "print the effective settings, secrets redacted")
    command("init-tables", init_tables, "create the tables that are missing")
    legacy = command("import-legacy", import_legacy, "import the original service's stars and users")
    legacy.add_argument("--dry-run", action="store_true", help="write nothing; print what would be done")
    legacy.add_argument(
        "--delete-source", action="store_true",
        help="after importing, delete each original row whose import was read back and matches",
    )  # fmt: skip
    legacy.add_argument(
        "--repair", action="store_true",
        help="clamp coordinates into [-1, 1], cut messages to 280 characters and drop control characters, "
        "instead of skipping those rows",
    )  # fmt: skip
    legacy.add_argument(
        "--placeholder-emails", action="store_true",
        help="import users whose address is invalid or held by an older user with <id>@legacy.invalid "
        "(the original kept as legacy_email) instead of skipping them",
    )  # fmt: skip
    legacy.add_argument(
        "--timezone", type=_zone, default=_zone("UTC"), metavar="ZONE",
        help="the original server's time zone, for its zone-less user CreatedAt (default: UTC)",
    )  # fmt: skip
    legacy.add_argument(
        "--source-connection-string", metavar="CS",
        help="read the original rows from this Azure storage account (default: the configured store); "
        "'-' reads it from standard input, out of the process list",
    )  # fmt: skip
    legacy.add_argument(
        "--source-table-prefix", default="", metavar="PREFIX", help="table prefix in the source account"
    )
    legacy.add_argument("--report", metavar="FILE", help="also write every row's outcome to FILE as JSON")
    out = command("export", export, "write every table as JSON lines (a backup)")
    out.add_argument("file", nargs="?", default="-", metavar="FILE", help="where to write (default: stdout)")
    into = command("import", import_file, "load a file written by export")
    into.add_argument("file", metavar="FILE", help="the export to load ('-': standard input)")
    into.add_argument("--replace", action="store_true", help="overwrite rows whose key is already there")
    check = command("probe", probe, "exit 0 if the local service is alive or ready (for health checks)")
    check.add_argument("which", choices=("liveness", "readiness"))
    check.add_argument("--url", help="the service's base URL (default: http://127.0.0.1:$PORT)")
    check.add_argument("--timeout", type=float, default=PROBE_TIMEOUT, help="seconds (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``starmap`` command; the exit code."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = getattr(args, "func", serve)
    try:
        return func(args)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `starmap export | head`: the reader left; not an error of ours
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written to it
        return 0
