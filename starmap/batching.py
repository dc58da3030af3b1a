"""Draining a queue into a batch: how every group-commit loop here takes its work.

A writer waits for one item, then takes whatever else is already queued (up to a
limit) without waiting again, and handles it all at once: many likes become one
write, many mirror updates one pipeline, many SQLite writes one transaction.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from typing import Final, TypeVar

__all__ = ("take_batch",)

T = TypeVar("T")
_NO_STOP: Final = object()
_EMPTY: Final = (asyncio.QueueEmpty, queue.Empty)


def take_batch(
    first: T, get_nowait: Callable[[], T], limit: int, *, stop: object = _NO_STOP
) -> tuple[list[T], bool]:
    """``first`` and what is queued behind it, at most ``limit`` in all; and whether ``stop`` came.

    ``get_nowait`` is the queue's own (an asyncio queue's, or a thread queue's); the
    ``stop`` item, if it is met, ends the batch and is not part of it.
    """
    batch = [first]
    while len(batch) < limit:
        try:
            item = get_nowait()
        except _EMPTY:
            break
        if item is stop:
            return batch, True
        batch.append(item)
    return batch, False
