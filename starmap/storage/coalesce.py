"""Coalescing writes per partition: under load, many callers' writes in one transaction.

Azure Tables commits up to 100 operations on one partition atomically, in one request.
Each write here is a *group*: one caller's operations, which must land together. Groups
queue per (table, partition); at most ``writers`` partitions are written at once, and a
partition's writer takes every group waiting for it that fits (≤ 100 operations, no row
twice). While it writes, the next groups for that partition gather.

What was gathered goes as one transaction when it holds at least ``min_transaction``
operations, else each group as its own request, all at once: the SDK spends several
single writes' CPU on a transaction's multipart body (measured: a 2-operation
transaction costs 2.4 single writes, 3 break even), so small merges would cost the
replica more than they save the store.

A replica's writes reach the store faster than a partition's queue grows (when its CPU,
not the store, is what is busy), so gathering needs time: with ``spacing``, a partition
is flushed at most once per ``spacing`` seconds, and what arrives meanwhile waits for
the next transaction. A partition idle for ``spacing`` writes at once, so a lone write
is never held.

A transaction fails as a whole, and the store names the operation that failed: its group
gets the error and the others go again at once, so a conflict on one star is that star's
alone. An error that names no operation goes to every group when it leaves the outcome
unknown (``StorageUnavailable``: all of them landed or none did), else each group is sent
on its own to learn whose it is.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence

import attrs

from ..errors import StorageUnavailable
from .base import MAX_BATCH, Op

__all__ = ("PartitionWriter", "TransactionFailed")

Send = Callable[[str, Sequence[Op]], Awaitable[list[str | None]]]
_Key = tuple[str, str]  # (table, partition)


class TransactionFailed(Exception):
    """A transaction failed at operation ``index`` (None: the store did not say) with ``error``."""

    def __init__(self, index: int | None, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


@attrs.define(eq=False)
class _Group:
    ops: Sequence[Op]
    future: asyncio.Future[list[str | None]]
    rows: frozenset[str]


class PartitionWriter:
    """Sends writes as few transactions as the partitions allow; see the module docstring.

    ``send(table, ops)`` makes one request for ``ops`` (one partition, ≤ 100, one per row)
    and returns their ETags, or raises ``TransactionFailed`` for an error it can place.
    """

    def __init__(
        self, send: Send, *, writers: int, timeout: float, min_transaction: int = 1, spacing: float = 0.0
    ) -> None:
        self._send = send
        self._writers = writers
        self._min_transaction = min_transaction
        self._spacing = spacing
        self._timeout = timeout
        self._queues: defaultdict[_Key, deque[_Group]] = defaultdict(deque)
        self._ready: deque[_Key] = deque()  # partitions with groups waiting and no transaction out
        self._busy: set[_Key] = set()  # partitions in _ready, with a transaction out, or cooling
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0  # round trips that carried writes (for /metrics)

    async def write(self, table: str, ops: Sequence[Op]) -> list[str | None]:
        """Commit ``ops`` (checked: one partition, ≤ 100, one per row) together; their ETags."""
        future: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        key = (table, str(ops[0].entity["PartitionKey"]))
        self._queues[key].append(_Group(ops, future, frozenset(str(op.entity["RowKey"]) for op in ops)))
        if key not in self._busy:
            self._busy.add(key)
            self._ready.append(key)
            self._start()
        try:
            # A caller that stops waiting cancels its future: still queued, it is dropped
            # and nothing is written; already sent, its outcome is unknown, as with any
            # write that timed out.
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            raise StorageUnavailable(f"table store: no answer within {self._timeout:g}s") from None

    def _start(self) -> None:
        while self._active < self._writers and self._ready:
            key = self._ready.popleft()
            self._active += 1
            task = asyncio.get_running_loop().create_task(self._flush(key), name=f"write {key[0]}/{key[1]}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, key: _Key) -> list[_Group]:
        """The groups waiting for ``key`` that fit one transaction, in order."""
        queue, taken, rows, size = self._queues[key], [], set[str](), 0
        while queue:
            group = queue[0]
            if group.future.done():  # its caller gave up while it waited
                queue.popleft()
                continue
            if size + len(group.ops) > MAX_BATCH or not rows.isdisjoint(group.rows):
                break  # the next transaction takes it, still in order
            queue.popleft()
            taken.append(group)
            rows |= group.rows
            size += len(group.ops)
        return taken

    async def _flush(self, key: _Key) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        groups = self._take(key)
        try:
            if sum(len(group.ops) for group in groups) >= self._min_transaction:
                await self._commit_all(key[0], groups)
            else:  # too few to pay for a transaction: each on its own, at once
                await asyncio.gather(*(self._commit_all(key[0], [group]) for group in groups))
        except BaseException as exc:  # a bug, or shutdown: nobody is left waiting forever
            for group in groups:
                _settle(group, error=exc if isinstance(exc, Exception) else StorageUnavailable("stopped"))
            raise
        finally:
            self._active -= 1
            # A partition is flushed at most once per ``spacing``: what arrives meanwhile
            # gathers for the next transaction. An idle partition's first write goes at once.
            wait = started + self._spacing - loop.time()
            if wait > 0:
                loop.call_later(wait, self._cooled, key)
                self._start()  # this writer is free for other partitions meanwhile
            else:
                self._cooled(key)

    def _cooled(self, key: _Key) -> None:
        if self._queues[key]:
            self._ready.append(key)
        else:
            self._busy.discard(key)
            del self._queues[key]
        self._start()

    async def _commit_all(self, table: str, groups: list[_Group]) -> None:
        while groups:
            groups = await self._commit(table, groups)

    async def _commit(self, table: str, groups: list[_Group]) -> list[_Group]:
        """Send ``groups`` as one transaction and settle them; the groups to send again."""
        ops = [op for group in groups for op in group.ops]
        self.requests += 1
        try:
            etags = await self._send(table, ops)
        except TransactionFailed as failed:
            if len(groups) == 1:
                _settle(groups[0], error=failed.error)
                return []
            if failed.index is None:  # whose is it? each on its own says
                for group in groups:
                    await self._commit(table, [group])
                return []
            at = failed.index
            for i, group in enumerate(groups):
                if at < len(group.ops):
                    _settle(group, error=failed.error)
                    return groups[:i] + groups[i + 1 :]
                at -= len(group.ops)
            raise AssertionError(f"no operation {failed.index} in a transaction of {len(ops)}") from failed
        except Exception as exc:  # unknown outcome (or a bug): every group hears it
            for group in groups:
                _settle(group, error=exc)
            return []
        start = 0
        for group in groups:
            _settle(group, etags=etags[start : start + len(group.ops)])
            start += len(group.ops)
        return []

    async def close(self) -> None:
        """Wait for the transactions out (their callers may have gone) to finish."""
        if self._tasks:
            await asyncio.wait(self._tasks)


def _settle(group: _Group, *, etags: list[str | None] | None = None, error: Exception | None = None) -> None:
    if group.future.done():  # its caller gave up while it was out
        return
    if error is not None:
        group.future.set_exception(error)
    else:
        group.future.set_result(etags or [])
