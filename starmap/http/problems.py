"""RFC 9457 problem details, and the one middleware that answers every error with them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from ..errors import (
    ActorStopped,
    AlreadyExists,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    NotFound,
    Overloaded,
    PreconditionFailed,
    StarmapError,
    StorageUnavailable,
    ValidationFailed,
)
from .jsonio import json_response

__all__ = ("PROBLEM_JSON", "answer_error", "problem")

log = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
# How long a client should wait before retrying a 503, by cause.
RETRY_AFTER: Final = {StorageUnavailable: 5, Overloaded: 1, ActorStopped: 1, IdempotencyKeyInFlight: 1}
_STATUS: Final[Mapping[type[StarmapError], int]] = {
    NotFound: 404,
    AlreadyExists: 409,
    PreconditionFailed: 409,
    ValidationFailed: 422,
    IdempotencyKeyReused: 422,
    IdempotencyKeyInFlight: 409,
    StorageUnavailable: 503,
    Overloaded: 503,
    ActorStopped: 503,
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A problem+json answer."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    answer = json_response(body, status=status, content_type=PROBLEM_JSON)
    if headers:
        answer.headers.update(headers)
    return answer


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    headers = CIMultiDict(exc.headers)
    headers.popall("Content-Type", None)
    default_text = f"{exc.status}: {exc.reason}"
    detail = exc.text if exc.text and exc.text != default_text else exc.reason
    if isinstance(exc, web.HTTPMethodNotAllowed):
        detail = f"{exc.method} is not allowed here; allowed: {', '.join(sorted(exc.allowed_methods))}"
    elif isinstance(exc, web.HTTPNotFound) and detail == exc.reason:
        detail = "no such resource"
    answer = problem(exc.status, detail or exc.reason, headers=headers)
    if exc.status == 408:  # the rest of that body may never come: the connection cannot be reused
        answer.force_close()
    return answer


def _from_domain_error(exc: StarmapError) -> web.Response:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
    errors = None
    if isinstance(exc, ValidationFailed):
        errors = [{"field": field, "message": message} for field, message in exc.errors.items()]
    headers = {}
    retry = next((s for cls, s in RETRY_AFTER.items() if isinstance(exc, cls)), None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    if status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc)
    return problem(status, str(exc), errors=errors, headers=headers)


def answer_error(request: web.Request, exc: Exception, *, verbose: bool = False) -> web.StreamResponse:
    """The problem+json answer to an error a handler raised (redirects are raised again).

    The one place errors become HTTP: domain errors by their kind, aiohttp's own by
    their status, anything else logged and answered 500 without its details (with
    ``verbose``, ``DEBUG=true`` outside production, the exception's type and message).
    """
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return _from_http_exception(exc)
    if isinstance(exc, StarmapError):
        return _from_domain_error(exc)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    detail = f"{type(exc).__name__}: {exc}" if verbose else "an unexpected error; it has been logged"
    return problem(500, detail)
