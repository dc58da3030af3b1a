"""What every subcommand shares: settings (exit 2 on a bad one), logging, running a coroutine."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable
from typing import TypeVar

from ..errors import SettingsError, StarmapError
from ..settings import Settings, load_settings

__all__ = ("log", "read_settings", "run", "with_logging")

log = logging.getLogger("starmap")

T = TypeVar("T")


def read_settings() -> Settings:
    """The settings, or exit 2 with the one line that names the bad variable."""
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        print(f"starmap: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def with_logging() -> Settings:
    from ..logs import configure_logging

    settings = read_settings()
    configure_logging(settings)
    return settings


def run(work: Awaitable[T]) -> T:
    """Run a tool's coroutine; a store that cannot be reached exits 1 with one line."""
    try:
        return asyncio.run(work)  # type: ignore[arg-type]
    except StarmapError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
