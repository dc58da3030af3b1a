"""Progress of long work: a tqdm bar on a terminal (the tools), a log line every few seconds
elsewhere (the tools in a job, the service loading its index or clearing the sky)."""

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
        total: int | None,
        *,
        log: logging.Logger,
        stream: TextIO | None = None,
        every: float = LOG_EVERY,
        bar: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._log = log
        self._every = every
        self._started = self._logged = time.monotonic()
        self._shown = False  # a line was logged: long work ends with a last one
        out = stream or sys.stderr
        self._bar = tqdm(total=total, desc=label, unit="rows", file=out) if bar and out.isatty() else None

    def advance(self, rows: int = 1) -> None:
        self.done += rows
        if self._bar is not None:
            self._bar.update(rows)
            return
        now = time.monotonic()
        if now - self._logged >= self._every:
            self._logged, self._shown = now, True
            self._log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        """``label: done/total rows, N rows/s, about S s left`` (``done rows, N rows/s`` without a total)."""
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self.label}: {self.done} rows, {rate:.0f} rows/s"
        left = f"about {(self.total - self.done) / rate:.0f}s left" if rate > 0 else "time left unknown"
        return f"{self.label}: {self.done}/{self.total} rows, {rate:.0f} rows/s, {left}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.total or self._shown:
            self._log.info("%s", self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
