"""Progress of a long command: a tqdm bar on a terminal, a log line every few seconds elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Final, TextIO

from tqdm import tqdm

__all__ = ("Progress",)

LOG_EVERY: Final = 5.0


class Progress:
    """Counts rows done out of ``total``; shows rows/s and the time left."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        log: logging.Logger,
        stream: TextIO | None = None,
        every: float = LOG_EVERY,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._log = log
        self._every = every
        self._started = self._logged = time.monotonic()
        out = stream or sys.stderr
        self._bar = tqdm(total=total, desc=label, unit="rows", file=out) if out.isatty() else None

    def advance(self, rows: int = 1) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(rows)
            return
        now = time.monotonic()
        if now - self._logged >= self._every:
            self._logged = now
            self._log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``label: done/total rows, N rows/s, about S s left``."""
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        rate = self.done / elapsed
        left = f"about {(self.total - self.done) / rate:.0f}s left" if rate > 0 else "time left unknown"
        return f"{self.label}: {self.done}/{self.total} rows, {rate:.0f} rows/s, {left}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.total:
            self._log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
