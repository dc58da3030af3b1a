"""Progress of long work: log lines with rows/s (and the time left when the total is known)."""

from __future__ import annotations

import io
import logging

import pytest

from starmap.progress import Progress

log = logging.getLogger("test.progress")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_say_rows_rate_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress("clear", 200, log=log, stream=io.StringIO(), every=0) as progress:
            progress.advance(50)
        with Progress("loading", None, log=log, stream=io.StringIO(), every=0) as progress:
            progress.advance(7)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("clear: 50/200 rows, ") and "rows/s, about " in lines[0]
    assert lines[-1].startswith("loading: 7 rows, ") and lines[-1].endswith("rows/s")


def test_a_terminal_gets_a_bar_and_the_service_never_does(caplog: pytest.LogCaptureFixture) -> None:
    terminal = Terminal()
    with caplog.at_level(logging.INFO, logger="test.progress"):
        with Progress("import", 10, log=log, stream=terminal, every=0) as progress:
            progress.advance(10)
        assert "10/10" in terminal.getvalue() and not caplog.records  # tqdm drew it
        with Progress("index", None, log=log, stream=Terminal(), every=0, bar=False) as progress:
            progress.advance(3)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["index: 3 rows", "index: 3 rows"]
