"""JSON answers, encoded by orjson (several times faster than the standard library)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

__all__ = ("JSON", "json_response")

JSON: Final = "application/json"


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None, content_type: str = JSON
) -> web.Response:
    """Like ``web.json_response``, with orjson and a UTF-8 charset."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type=content_type, charset="utf-8"
    )
