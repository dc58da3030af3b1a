"""Requests aiohttp cannot parse: answered as problem+json, the input never echoed.

aiohttp answers a malformed request (a bad request line, an unknown method, conflicting
``Transfer-Encoding`` and ``Content-Length``, an oversized line, a control byte in a
header) before any application code runs, from ``RequestHandler.handle_error``: a
``text/plain`` body that quotes the raw input, and an ERROR line with a traceback. That
method is the one place to answer them, so ``install`` makes aiohttp's server use a
subclass that overrides it (``tests/test_hostile_input.py`` pins the behaviour, so an
aiohttp release that changes the mechanism fails the suite rather than the service).
Server errors (5xx) keep aiohttp's own handling and logging.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import orjson
from aiohttp import http_exceptions, web, web_protocol, web_server
from aiohttp.web_request import BaseRequest

__all__ = ("ProblemRequestHandler", "install")

# What each parser error is, in words; anything else is "could not be parsed".
_DETAILS: Final = (
    (http_exceptions.BadHttpMethod, "the request method is not one HTTP allows"),
    (http_exceptions.LineTooLong, "a line of the request is too long"),
    (http_exceptions.InvalidHeader, "a header of the request is malformed"),
    (http_exceptions.BadStatusLine, "the request line is malformed"),
    (http_exceptions.TransferEncodingError, "the body's framing is invalid"),
    (http_exceptions.ContentLengthError, "the body's length is invalid"),
    (http_exceptions.InvalidURLError, "the request target is malformed"),
)


def _detail(exc: BaseException | None) -> str:
    for kind, words in _DETAILS:
        if isinstance(exc, kind):
            return words
    if exc is not None and "Content-Length" in str(exc) and "Transfer-Encoding" in str(exc):
        return "Content-Length and Transfer-Encoding must not both be sent"
    return "the request could not be parsed as HTTP/1.1"


class ProblemRequestHandler(web_protocol.RequestHandler):
    """aiohttp's request handler, answering what it cannot parse as problem+json."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        # A client's mistake, not ours: a DEBUG line, and never its bytes.
        self.logger.debug("refused a malformed request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:  # an answer had begun: the connection is past saving
            raise ConnectionError("an answer was already under way")
        body = {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": _detail(exc),
        }
        answer = web.Response(status=status, body=orjson.dumps(body), content_type="application/problem+json")
        answer.force_close()
        return answer


def install() -> None:
    """Make aiohttp's server use ``ProblemRequestHandler`` (idempotent)."""
    # The name aiohttp's Server instantiates for every connection (web_server.Server.__call__).
    setattr(web_server, "RequestHandler", ProblemRequestHandler)  # noqa: B010 - not re-exported there
