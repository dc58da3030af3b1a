"""``python -m starmap`` as a real process: start, serve, refuse bad settings, stop."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import MakeProcess
from .rig import ROOT, get_json

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_embedded_default_serves_health_and_keeps_data_under_data_dir(tmp_path: Path) -> None:
    """What the README's run command does: nothing configured but a port and DATA_DIR."""
    from .rig import StarmapProcess

    data_dir = tmp_path / "data"
    proc = StarmapProcess(tmp_path, {"DATA_DIR": str(data_dir)})
    started = time.monotonic()
    proc.start()
    try:
        status, body = get_json(f"{proc.url}/health")
        assert status == 200 and body["status"] == "healthy"
        assert time.monotonic() - started < 10
        assert (data_dir / "starmap.sqlite3").is_file()
        status, ready = get_json(f"{proc.url}/health/readiness")
        assert (status, ready["status"]) == (200, "ready")
    finally:
        proc.stop()


def test_sigterm_exits_cleanly_within_5_seconds(make_process: MakeProcess) -> None:
    proc = make_process()
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "notaport"), ("ENVIRONMENT", "prod"), ("AZURE_STORAGE_USE_MANAGED_IDENTITY", "true")],
)
def test_a_bad_value_stops_start_up_with_one_line(tmp_path: Path, variable: str, value: str) -> None:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "DATA_DIR": str(tmp_path), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "starmap"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    expected = "AZURE_STORAGE_ACCOUNT_URL" if variable.startswith("AZURE") else variable
    assert expected in lines[0]
    assert not (tmp_path / "starmap.sqlite3").exists()


@pytest.mark.parametrize("backend", ["azurite"], indirect=False)
def test_secrets_never_reach_the_logs(make_process: MakeProcess, backend: str) -> None:
    proc = make_process(ADMIN_API_KEY="admin-key-do-not-log", LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    for path in ("/health", "/health/readiness", "/nope"):
        with contextlib.suppress(urllib.error.HTTPError):
            get_json(f"{proc.url}{path}")
    proc.stop()
    log = proc.log()
    assert '"path":"/health/readiness"' in log  # the request lines are there
    conn = proc.environ["AZURE_STORAGE_CONNECTION_STRING"]
    key = conn.split("AccountKey=")[1].split(";")[0]
    for secret in ("admin-key-do-not-log", conn, key):
        assert secret not in log
    for line in log.splitlines():
        json.loads(line)  # JSON lines, every one


def test_ready_is_logged_once_bound_and_loaded(make_process: MakeProcess) -> None:
    proc = make_process(LOG_LEVEL="INFO")
    deadline = time.monotonic() + 10
    while "ready: listening on" not in proc.log():
        assert time.monotonic() < deadline, proc.log()
        time.sleep(0.05)
    log = proc.log()
    ready = log.index(f"ready: listening on http://127.0.0.1:{proc.port}")
    assert log.index("star index:") < ready and log.index("user index:") < ready
    assert log.count("listening on") == 1
    assert "on http://" not in log[:ready]  # nothing claims an address before it is bound


def test_what_start_up_built_is_left_out_of_garbage_collection(make_process: MakeProcess) -> None:
    """At ready, `python -m starmap` freezes its start-up objects (the collector's full passes
    skip them) and turns the collector back on (it is off while start-up builds the indexes);
    an app made by `create_app` alone, as in the other tests, freezes nothing."""
    proc = make_process()
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=10) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
    frozen = re.search(r"^starmap_gc_frozen_objects ([0-9.e+]+)$", text, re.MULTILINE)
    assert frozen is not None and float(frozen.group(1)) > 10_000
    assert re.search(r"^starmap_gc_enabled 1\.0$", text, re.MULTILINE), text


def test_each_connection_gets_the_configured_request_handler(make_process: MakeProcess) -> None:
    """aiohttp builds a RequestHandler per connection; arguments it does not take make it
    fall back to its defaults, with a warning, on every connection."""
    proc = make_process(LOG_LEVEL="INFO")
    for _ in range(3):  # a new connection each time
        with urllib.request.urlopen(f"{proc.url}/health/liveness", timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
    time.sleep(0.5)  # warnings are written at once; give the process a moment anyway
    assert "Failed to create request handler" not in proc.log()
