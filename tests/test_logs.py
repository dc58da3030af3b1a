"""The access line made without the logging machinery is the line the formatters make."""

from __future__ import annotations

import io
import logging
import math
import random
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from starmap.errors import SettingsError
from starmap.logs import (
    _ACCESS,
    AccessLogger,
    AccessSink,
    BufferedStreamHandler,
    JsonFormatter,
    RedactSecrets,
    TextFormatter,
    access_fields,
    configure_logging,
)
from starmap.settings import load_settings

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
SECRET = "a-secret-admin-key-of-thirty-two-chars"


def access_record(created: float, message: str, fields: dict[str, object] | None = None) -> logging.LogRecord:
    """An INFO record of aiohttp's access logger written at ``created`` (its milliseconds as
    logging derives them), with ``fields`` as its `extra`."""
    record = logging.LogRecord("aiohttp.access", logging.INFO, "", 0, "%s", (message,), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    for name, value in (fields or {}).items():
        setattr(record, name, value)
    return record


@pytest.mark.parametrize("json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize(
    "path",
    ["/stars/s1/like", "/stars/a\r\nforged line\u2028x\x1b[31m\x85", f"/leak/{SECRET}", "/ünïcode/✨"],
    ids=["plain", "controls", "secret", "unicode"],
)
@pytest.mark.parametrize(
    ("seconds", "remote", "request_id"),
    [(0.00123, "127.0.0.1", "abc-1"), (0.0, None, "-"), (0.01234567, "::1", "x"), (1.5, "10.0.0.1", "r"),
     (float("nan"), None, "-"), (1e10, "127.0.0.1", "big")],
    ids=["quick", "no-peer", "digits", "slow", "nan", "absurd"],
)  # fmt: skip
def test_the_fast_access_line_is_the_formatters_line(
    json: bool, path: str, seconds: float, remote: str | None, request_id: str
) -> None:
    """What ``access_line`` makes is what the logging path writes for the same request
    (``access_fields`` as the record's message and `extra`), secrets out."""
    redact = RedactSecrets([SECRET])
    sink = AccessSink(BufferedStreamHandler(io.StringIO()), json, redact)
    message, fields = access_fields("POST", path, 200, seconds, remote, 57, request_id)
    created = 1_795_000_000.123456
    record = access_record(created, message, fields)
    redact.filter(record)
    formatter = JsonFormatter() if json else TextFormatter(TEXT)
    line = sink.access_line("aiohttp.access", "POST", path, 200, seconds, remote, 57, request_id, created)
    assert line == formatter.format(record) + "\n"
    assert SECRET not in line


def test_an_access_lines_duration_field_is_rounds_rounding_of_its_milliseconds() -> None:
    """Rounded scaled, the field's milliseconds are ``round(_, 2)``'s (for times off the
    half-way points, as measured ones are); NaN and the infinities go through ``round``."""
    rng = random.Random(17)
    durations = [rng.expovariate(50) for _ in range(50_000)] + [0.0, 0.0004, 2.5, 86_400.0, -1.0]
    for seconds in [*durations, 1e13, float("inf"), float("-inf")]:
        message, fields = access_fields("GET", "/", 200, seconds, None, 0, "-")
        assert fields["duration_ms"] == round(seconds * 1000, 2)
        assert message == f"GET / 200 {seconds * 1000:.1f}ms"
    message, fields = access_fields("GET", "/", 200, float("nan"), None, 0, "-")
    assert math.isnan(fields["duration_ms"]) and message == "GET / 200 nanms"


@pytest.mark.parametrize("json", [True, False], ids=["json", "text"])
def test_the_access_lines_time_is_the_formatters_from_line_to_line(json: bool) -> None:
    """The stamp's date and time of day are kept for a second, its milliseconds for one: lines
    in the same millisecond, the next one, the next second and an earlier one all read as the
    formatter writes them."""
    sink = AccessSink(BufferedStreamHandler(io.StringIO()), json, RedactSecrets([]))
    formatter = JsonFormatter() if json else TextFormatter("%(asctime)s %(message)s")
    for created in (1_795_000_000.1231, 1_795_000_000.1234, 1_795_000_000.9991, 1_795_000_001.0004,
                    1_795_000_061.5, 1_795_000_000.25):  # fmt: skip
        record = access_record(created, "m")
        written = orjson.loads(formatter.format(record))["time"] if json else formatter.format(record)[:23]
        assert sink.stamp(created) == written


@pytest.mark.parametrize(
    ("method", "status", "seconds", "always"),
    [("GET", 200, 0.01, False), ("HEAD", 304, 0.01, False), ("OPTIONS", 204, 0.01, False),
     ("GET", 404, 0.01, True), ("GET", 503, 0.01, True), ("GET", 200, 1.5, True),
     ("POST", 200, 0.01, True), ("DELETE", 204, 0.01, True), ("PUT", 405, 0.01, True)],
)  # fmt: skip
def test_only_successful_quick_reads_are_sampled(
    method: str, status: int, seconds: float, always: bool
) -> None:
    def sink(sample: float) -> AccessSink:
        return AccessSink(BufferedStreamHandler(io.StringIO()), True, RedactSecrets([]), sample)

    assert sink(1.0).wants(method, status, seconds)
    assert sink(0.0).wants(method, status, seconds) is always
    kept = sum(sink(0.1).wants(method, status, seconds) for _ in range(2000))
    assert kept == 2000 if always else 100 < kept < 320  # ~200; the odds outside are below 1e-12


def test_production_samples_reads_and_development_logs_every_one(tmp_path: Path) -> None:
    base = {"DATA_DIR": str(tmp_path)}
    assert load_settings({**base, "ENVIRONMENT": "production"}, root=tmp_path).access_sample == 0.1
    assert load_settings(base, root=tmp_path).access_sample == 1.0
    every = {**base, "ENVIRONMENT": "production", "LOG_ACCESS_SAMPLE": "1"}
    assert load_settings(every, root=tmp_path).access_sample == 1.0
    with pytest.raises(SettingsError, match="LOG_ACCESS_SAMPLE"):
        load_settings({**base, "LOG_ACCESS_SAMPLE": "1.5"}, root=tmp_path)


def test_the_access_logger_writes_the_lines_the_sample_keeps(tmp_path: Path) -> None:
    """configure_logging wires the sample into the logger aiohttp calls per request."""
    root, saved = (
        logging.getLogger(),
        (logging.getLogger().handlers[:], logging.getLogger().level, _ACCESS[:]),
    )
    env = {"DATA_DIR": str(tmp_path), "ENVIRONMENT": "production", "LOG_ACCESS_SAMPLE": "0"}
    try:
        configure_logging(load_settings(env, root=tmp_path))
        handler = root.handlers[0]
        assert isinstance(handler, BufferedStreamHandler)
        handler.setStream(io.StringIO())
        access = AccessLogger(logging.getLogger("aiohttp.access"), "")
        for method, status in (("GET", 200), ("HEAD", 304), ("GET", 404), ("POST", 201)):
            access.log(make_mocked_request(method, "/stars/s1"), web.Response(status=status), 0.002)
        handler.flush()
        stream = handler.stream
        assert isinstance(stream, io.StringIO)
        lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["method"], line["status"]) for line in lines] == [("GET", 404), ("POST", 201)]
    finally:
        for made in root.handlers:
            made.close()  # its flusher thread too
        root.handlers[:], _ACCESS[:] = saved[0], saved[2]
        root.setLevel(saved[1])


def test_buffered_lines_are_written_within_the_interval_warnings_at_once_and_after_close_at_once() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=0.05)
    try:
        handler.write_line("info\n")
        assert stream.getvalue() == ""  # held for the flusher
        deadline = time.monotonic() + 5
        while stream.getvalue() != "info\n" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.getvalue() == "info\n"
        handler.write_line("warning\n", urgent=True)
        assert stream.getvalue() == "info\nwarning\n"
    finally:
        handler.close()
    handler.write_line("late\n")  # no thread flushes after close: written at once
    assert stream.getvalue() == "info\nwarning\nlate\n"


def test_a_deferred_access_line_is_made_at_the_flush_in_order_as_the_formatter_makes_it() -> None:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=60)  # only the explicit flushes below
    sink = AccessSink(handler, True, RedactSecrets([SECRET]))
    created = 1_795_000_000.123456
    parts = (
        "aiohttp.access",
        "POST",
        f"/leak/{SECRET}\u2028",
        200,
        0.00123,
        "127.0.0.1",
        57,
        "abc-1",
        created,
    )
    try:
        handler.write_line("before\n")
        handler.write_later(sink.access_line, parts, 200)
        assert stream.getvalue() == ""  # queued as its parts, not made
        handler.write_line("after\n")
        handler.flush()
        before, made, after = stream.getvalue().splitlines()
        assert (before, after) == ("before", "after")
        fields = {"method": "POST", "path": f"/leak/{SECRET}\u2028", "status": 200, "duration_ms": 1.23,
                  "remote": "127.0.0.1", "bytes": 57, "request_id": "abc-1"}  # fmt: skip
        record = access_record(created, f"POST /leak/{SECRET}\u2028 200 1.2ms", fields)
        RedactSecrets([SECRET]).filter(record)
        assert made == JsonFormatter().format(record)  # secrets out, U+2028 escaped: one line

        def broken() -> str:
            raise RuntimeError("no line\nhere")

        handler.write_later(broken, (), 200)
        handler.write_line("still\n")
        handler.flush()
        failed, still = stream.getvalue().splitlines()[3:]
        assert orjson.loads(failed)["level"] == "ERROR" and "no line" in orjson.loads(failed)["message"]
        assert still == "still"  # one line that cannot be made loses nothing else
    finally:
        handler.close()
