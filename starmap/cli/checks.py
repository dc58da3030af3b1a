"""``starmap check-config`` and ``starmap probe``: what is configured, and is it up."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from typing import Final

from ..logs import escape_controls
from ..settings import describe_settings
from .common import read_settings

__all__ = ("ANY_ADDRESS", "PROBE_TIMEOUT", "check_config", "probe")

PROBE_TIMEOUT: Final = 3.0
ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - compared, not bound


def check_config(args: argparse.Namespace) -> int:
    """Print every setting as it takes effect, secrets redacted, and where it came from."""
    settings = read_settings()
    rows = describe_settings(settings, os.environ)
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {escape_controls(value)}  ({source})")
    from ..storage import describe_store

    print(f"\nstorage: {describe_store(settings)}; redis: {settings.redis.host or 'not configured'}")
    return 0


def probe(args: argparse.Namespace) -> int:
    """GET /health/liveness or /health/readiness of the local service: exit 0 on 200, else 1."""
    if args.url:
        base = args.url.rstrip("/")
    else:
        server = read_settings().server
        host = "127.0.0.1" if server.host in ANY_ADDRESS else server.host
        base = f"http://{'[' + host + ']' if ':' in host else host}:{server.port}"
    url = f"{base}/health/{args.which}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as answer:  # noqa: S310 - our own URL
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"starmap probe {args.which}: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"starmap probe {args.which}: {url}: {status}")
    return 0 if status == 200 else 1
