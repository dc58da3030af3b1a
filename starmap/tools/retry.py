"""Storage calls of the command-line tools, retried through short outages."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from ..errors import StorageUnavailable

__all__ = ("retry",)

T = TypeVar("T")
ATTEMPTS: Final = 5


async def retry(call: Callable[[], Awaitable[T]], *, attempts: int = ATTEMPTS, base: float = 0.5) -> T:
    """``call()``; on ``StorageUnavailable`` again after a jittered, doubling pause (so
    several tools or replicas do not retry in lockstep), at most ``attempts`` times."""
    for attempt in range(attempts - 1):
        try:
            return await call()
        except StorageUnavailable:
            await asyncio.sleep(base * random.uniform(0.5, 1.5) * 2**attempt)  # noqa: S311
    return await call()
