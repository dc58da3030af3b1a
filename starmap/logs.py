"""Logging: text for people, JSON lines in production, secrets never written."""

from __future__ import annotations

import contextvars
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs
import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from multidict import istr

from .rules import rounding
from .settings import LogFormat, Settings

__all__ = (
    "REQUEST_ID",
    "TextFormatter",
    "escape_controls",
    "REQUEST_ID_HEADER",
    "AccessLogger",
    "JsonFormatter",
    "RedactSecrets",
    "BufferedStreamHandler",
    "RequestIdFilter",
    "configure_logging",
)

# The id of the request being handled, for every log line written while handling it.
REQUEST_ID: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("request_id", default="-")
# The header that carries it on every answer (the front puts it there), where the access
# line, written after the handler, reads it: kept on the request as well, it cost every
# request aiohttp's Python __setitem__ and __getitem__.
REQUEST_ID_HEADER: Final = istr("X-Request-ID")

REDACTED: Final = "***"
# Attributes every LogRecord has; anything else was passed in `extra`.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    """Give every record the id of the request it was written for (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class RedactSecrets(logging.Filter):
    """Replace every configured secret value in a record's final text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a connection string goes before the key inside it.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            record.msg, record.args = self.text(record.getMessage()), None
            for name, value in vars(record).items():  # the `extra` fields too (a path, say)
                if name not in _STANDARD and isinstance(value, str):
                    setattr(record, name, self.text(value))
            if record.exc_info:
                text = logging.Formatter().formatException(record.exc_info)
                for secret in self._secrets:
                    text = text.replace(secret, REDACTED)
                record.exc_text, record.exc_info = text, None
        return True


# What could end or fake a line, or not print at all: C0 and C1 controls, DEL, Unicode's
# line separators, lone surrogates.
_UNSAFE: Final = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff]")


def escape_controls(text: str) -> str:
    """Text fit for one line of a log or a terminal: every control character (and lone
    surrogate) written as its escape (``\\r``, ``\\x1b``, ``\\ud800``); the one way to do it."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


_JSON_UNSAFE: Final = re.compile("[\x7f-\x9f\u2028\u2029]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class TextFormatter(logging.Formatter):
    """Lines for people: a message (a path, a header, anything a client sent) stays one line.

    A traceback, appended after the message, keeps its own line breaks.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # JSON escapes C0 controls itself but allows DEL, C1 and U+2028/2029 raw: some readers
        # split lines on those. Escaped, the line stays valid JSON and one line for everyone.
        return _JSON_UNSAFE.sub(_json_escape, orjson.dumps(entry, default=str).decode())


JsonFormatter.converter = time.gmtime


# A queued line: made already, or what makes it and its parts (``write_later``).
_Entry = str | tuple[Callable[..., str], tuple[Any, ...]]


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Lines go to the stream in batches: at 64 KiB, every ``interval`` s, and for warnings at once.

    One write per batch instead of one per line (an access line per request was a
    fifth of a request's cost). At most ``interval`` seconds of INFO lines are lost
    if the process is killed; errors and warnings are flushed as they come. One thread
    flushes for the handler's life: a timer thread per interval cost the event loop a
    thread start (and a GIL hand-over) four times a second.

    A line may also be queued unmade (``write_later``): its parts, and what makes it. It
    is made at the flush, in order with the rest: made in a batch (the flush's tight
    loop) a line costs a third of what it costs made between two requests. Whoever
    flushes makes the batch: the flusher thread at the interval, and under load the event
    loop itself, whose line reaches 64 KiB well within the interval.
    """

    def __init__(self, stream: Any, *, interval: float = 0.25, limit: int = 64 * 1024) -> None:
        super().__init__(stream)
        self._pending: list[_Entry] = []
        self._size = 0
        self._limit = limit
        self._interval = interval
        self._stopped = threading.Event()
        self._closed = False  # the same as _stopped, read on every line (a plain attribute)
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.write_line(line, urgent=record.levelno >= logging.WARNING)

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        """Queue one finished line (with its line ending); ``urgent``: written out at once."""
        self._queue(line, len(line), urgent)

    def write_later(self, make: Callable[..., str], parts: tuple[Any, ...], size: int) -> None:
        """Queue a line as ``make(*parts)`` (with its line ending), made at the flush; ``size``:
        about how long it will be (for the 64 KiB bound)."""
        self._queue((make, parts), size, False)

    def _queue(self, entry: _Entry, size: int, urgent: bool) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(entry)
            self._size += size
            # After close (interpreter shutdown) no thread flushes any more: write at once.
            urgent = urgent or self._size >= self._limit or self._closed
            if self._flusher is None and not urgent:
                self._flusher = threading.Thread(
                    target=self._flush_often, name="starmap-log-flush", daemon=True
                )
                self._flusher.start()
        if urgent:
            self.flush()

    def _flush_often(self) -> None:
        while not self._stopped.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            pending, self._pending, self._size = self._pending, [], 0
            if pending:  # deferred lines made here, in order (under the lock: emit holds it too)
                self.stream.write("".join(_made(pending)))
            super().flush()

    def close(self) -> None:
        self._closed = True
        self._stopped.set()
        self.flush()
        super().close()


def _made(pending: list[_Entry]) -> list[str]:
    """The queued lines, the deferred ones made; one that cannot be made says so on a line of
    its own. One loop for the batch: no generator to resume and no call of its own per line."""
    lines: list[str] = []
    for entry in pending:
        if isinstance(entry, str):
            lines.append(entry)
            continue
        make, parts = entry
        try:
            lines.append(make(*parts))
        except Exception as exc:  # never lose the batch for one line
            failed = {
                "level": "ERROR",
                "logger": __name__,
                "message": f"a log line could not be made: {exc!r}",
            }
            # JSON: one line, whatever exc says.
            lines.append(orjson.dumps(failed, default=str).decode() + "\n")
    return lines


def configure_logging(settings: Settings) -> None:
    """Root logging for the process, from the settings."""
    # What no line here shows, not collected per record (the logging HOWTO's "Optimization"):
    # the caller's file and line (a stack walk per record), thread, process. An access line
    # per request pays for all of them otherwise.
    logging._srcfile = None  # documented there: "set logging._srcfile to None"
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BufferedStreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecrets(settings.secrets()))
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        text = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
        handler.setFormatter(TextFormatter(text))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    redact = next(f for f in handler.filters if isinstance(f, RedactSecrets))
    _ACCESS[:] = [AccessSink(handler, settings.log_format is LogFormat.JSON, redact, settings.access_sample)]
    root.setLevel(settings.log.level)
    # The SDK logs every HTTP request at INFO, headers included.
    logging.getLogger("azure").setLevel(max(logging.WARNING, root.level))


@attrs.define
class AccessSink:
    """Where access lines go without the logging machinery: the root handler, and its rules.

    ``sample``: the share of successful, quick reads (GET, HEAD, OPTIONS under 400, under
    ``SLOW`` seconds) that get a line; every other request always gets one.
    """

    handler: BufferedStreamHandler
    json: bool
    redact: RedactSecrets
    sample: float = 1.0
    _milli: int = -1
    _stamp: str = ""
    _second: int = -1
    _date_time: str = ""  # the stamp of _second up to its milliseconds

    def stamp(self, created: float) -> str:
        """The formatters' time (UTC ISO for JSON, local with a comma for text): the date and time
        of day made once a second (strftime was a quarter of a line's cost), the rest once a
        millisecond."""
        milli = int(created * 1000)
        if milli != self._milli:
            second, millis = divmod(milli, 1000)
            if second != self._second:
                if self.json:
                    self._date_time = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
                else:
                    self._date_time = time.strftime("%Y-%m-%d %H:%M:%S,", time.localtime(second))
                self._second = second
            self._stamp = f"{self._date_time}{millis:03d}Z" if self.json else f"{self._date_time}{millis:03d}"
            self._milli = milli
        return self._stamp

    def access_line(
        self,
        logger: str,
        method: str,
        path: str,
        status: int,
        seconds: float,
        remote: str | None,
        size: int,
        request_id: str,
        created: float,
    ) -> str:
        """The line the root handler's formatter would write for this request's access record
        (``access_fields`` as the record's message and `extra`), secrets out, with its line ending.

        One dict made for the JSON line, not the fields and then the entry around them."""
        message, duration_ms = _message(method, path, status, seconds)
        if self.json:
            entry = {"time": self.stamp(created), "level": "INFO", "logger": logger, "message": message,
                     "method": method, "path": path, "status": status, "duration_ms": duration_ms,
                     "remote": remote, "bytes": size, "request_id": request_id}  # fmt: skip
            line = orjson.dumps(entry, default=str).decode()
            if not line.isascii() or "\x7f" in line:  # isascii is a flag lookup: most lines skip the scan
                line = _JSON_UNSAFE.sub(_json_escape, line)
        else:
            line = f"{self.stamp(created)} INFO {logger} [{request_id}]: {escape_controls(message)}"
        return self.redact.text(line) + "\n"

    def wants(self, method: str, status: int, seconds: float) -> bool:
        """Whether this request gets a line: see ``sample``."""
        return (
            self.sample >= 1.0
            or status >= 400
            or seconds >= SLOW
            or method not in _READS
            or random.random() < self.sample  # noqa: S311 - a sample, not a secret
        )


def access_fields(
    method: str, path: str, status: int, seconds: float, remote: str | None, size: int, request_id: str
) -> tuple[str, dict[str, Any]]:
    """An access line's message and its fields (the record's ``extra``)."""
    message, duration_ms = _message(method, path, status, seconds)
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "remote": remote,
        "bytes": size,
        "request_id": request_id,
    }
    return message, fields


def _message(method: str, path: str, status: int, seconds: float) -> tuple[str, float]:
    """An access line's message (its time in milliseconds to one decimal) and its time in
    milliseconds to two (the ``duration_ms`` field)."""
    ms = seconds * 1000
    return f"{method} {path} {status} {ms:.1f}ms", _hundredths(ms)


_hundredths: Final = rounding(2)


_ACCESS: list[AccessSink] = []  # set by configure_logging: the one sink of this process
_ACCESS_LINE_SIZE: Final = 220  # about, without its path: the 64 KiB bound counts queued lines by it
_READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
SLOW: Final = 1.0  # seconds: a read this slow always gets its access line


class AccessLogger(AbstractAccessLogger):
    """One line per request (successful quick reads sampled, see ``AccessSink``), with its
    fields as `extra` for the JSON formatter.

    The hot path of every request: once logging is configured its parts are queued on the
    root handler, which makes the line at its next flush exactly as its formatter would
    (``AccessSink.access_line``), without a LogRecord, the logger's and handler's passes,
    or the generic formatter.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        logger = self.logger
        sink = _ACCESS[0] if _ACCESS and not logger.handlers and logger.propagate else None
        method, status = request.method, response.status
        # Only reads are sampled (``wants``): a write's line is not in question, no call asks.
        if sink is not None and method in _READS and not sink.wants(method, status, time):
            return
        path = request.path
        # Set by the front on every answer; one aiohttp made itself (a request it refused before
        # any handler) has none.
        request_id = response.headers.get(REQUEST_ID_HEADER, "-")
        if sink is not None:  # the parts now, the line at the flush (see BufferedStreamHandler)
            parts = (logger.name, method, path, status, time, request.remote, response.body_length,
                     request_id, _now())  # fmt: skip
            sink.handler.write_later(sink.access_line, parts, _ACCESS_LINE_SIZE + len(path))
            return
        message, fields = access_fields(
            method, path, status, time, request.remote, response.body_length, request_id
        )
        logger.info("%s", message, extra=fields)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


_now = time.time
