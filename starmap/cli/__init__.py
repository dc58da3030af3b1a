"""``starmap``: the service and the tools to run it (``starmap --help``; ``python -m starmap`` serves).

Exit codes: 0 done; 1 failed (a store that does not answer, an import left incomplete,
a probe that failed); 2 a bad setting or argument, named in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

from .. import __version__
from .checks import PROBE_TIMEOUT, check_config, probe
from .data import export, import_file, import_legacy, init_tables, zone
from .serving import dev, serve

__all__ = ("main",)


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
        "--timezone", type=zone, default=zone("UTC"), metavar="ZONE",
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
