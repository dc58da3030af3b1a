"""Fault injection over a real store: the real backend underneath, failures on cue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starmap.errors import StorageUnavailable
from starmap.settings import Settings
from starmap.storage import TableStore, open_store

WRITES = ("insert", "update", "upsert", "delete", "batch")


class FaultyStore:
    """Delegates to the real store; the writes named in ``down`` or ``once`` fail.

    ``down`` holds (method, table) pairs that fail until healed; ``once`` those that
    fail the next time only. ``lost`` pairs are carried out, then answer with an error,
    as a write whose answer was lost to a timeout. ``slow`` maps pairs to seconds each
    such write takes before it is carried out.
    """

    def __init__(self, inner: TableStore) -> None:
        self.inner = inner
        self.down: set[tuple[str, str]] = set()
        self.once: set[tuple[str, str]] = set()
        self.lost: set[tuple[str, str]] = set()
        self.slow: dict[tuple[str, str], float] = {}
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in WRITES:
            return attribute

        async def write(table: str, *args: Any, **kwargs: Any) -> Any:
            key = (name, table)
            if key in self.slow:
                await asyncio.sleep(self.slow[key])
            if key in self.down or key in self.once:
                self.once.discard(key)
                self.refused += 1
                raise StorageUnavailable(f"injected: {name} on {table} failed")
            result = await attribute(table, *args, **kwargs)
            if key in self.lost:
                self.lost.discard(key)
                self.refused += 1
                raise StorageUnavailable(f"injected: the answer to {name} on {table} was lost")
            return result

        return write


def faulty_factory() -> tuple[list[FaultyStore], Callable[[Settings], TableStore]]:
    """A store factory for ``create_app`` and the list of the stores it made."""
    made: list[FaultyStore] = []

    def factory(settings: Settings) -> TableStore:
        made.append(FaultyStore(open_store(settings)))
        return made[-1]

    return made, factory
