"""The access line made without the logging machinery is the line the formatters make."""

from __future__ import annotations

import io
import logging

import pytest

from starmap.logs import AccessSink, BufferedStreamHandler, JsonFormatter, RedactSecrets, TextFormatter

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
SECRET = "a-secret-admin-key-of-thirty-two-chars"


@pytest.mark.parametrize("json", [True, False], ids=["json", "text"])
@pytest.mark.parametrize(
    "path",
    ["/stars/s1/like", "/stars/a\r\nforged line\u2028x\x1b[31m\x85", f"/leak/{SECRET}", "/ünïcode/✨"],
    ids=["plain", "controls", "secret", "unicode"],
)
def test_the_fast_access_line_is_the_formatters_line(json: bool, path: str) -> None:
    redact = RedactSecrets([SECRET])
    sink = AccessSink(BufferedStreamHandler(io.StringIO()), json, redact)
    fields = {"method": "POST", "path": path, "status": 200, "duration_ms": 1.23, "remote": "127.0.0.1",
              "bytes": 57, "request_id": "abc-1"}  # fmt: skip
    message = f"POST {path} 200 1.2ms"
    created = 1_795_000_000.123456
    record = logging.LogRecord("aiohttp.access", logging.INFO, "", 0, "%s", (message,), None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    for name, value in fields.items():
        setattr(record, name, value)
    redact.filter(record)
    formatter = JsonFormatter() if json else TextFormatter(TEXT)
    assert sink.line("aiohttp.access", message, fields, created) == formatter.format(record)
    assert SECRET not in sink.line("aiohttp.access", message, fields, created)
