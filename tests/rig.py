"""The test rig: real redis-server, Azurite and Star Map processes on free ports.

Plain classes that start and stop a process; the fixtures in ``conftest.py`` own
them. Nothing here ever talks to a port it did not start a server on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
AZURITE_BIN: Final = ROOT / "ops" / "azurite" / "node_modules" / ".bin" / "azurite-table"
# Azurite's well-known development account; it is public and not a secret.
AZURITE_ACCOUNT: Final = "devstoreaccount1"
AZURITE_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def get_json(url: str) -> tuple[int, Any]:
    """GET ``url`` (a server of the rig's) and its status and JSON body."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback only
        return answer.status, json.loads(answer.read())


def process_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process a test starts: the machine's basics, this checkout, ``env``."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {**base, "PYTHONPATH": str(ROOT), **env}


def raw_exchange(port: int, request: bytes, *, timeout: float = 5) -> bytes:
    """Send raw bytes, read the whole answer (the server closes: Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    """An aiohttp answer that is an RFC 9457 problem of ``status``; its body."""
    assert answer.status == status, await answer.text()
    assert answer.content_type == "application/problem+json"
    body: dict[str, Any] = await answer.json(content_type=None)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def wait_for_liveness(
    url: str, proc: subprocess.Popen[bytes], timeout: float, log: Callable[[], str] = lambda: ""
) -> None:
    """Wait until ``url``'s liveness answers 200; ``RuntimeError`` with the log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"starmap exited with {proc.returncode}:\n{log()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/health/liveness", timeout=1) as answer,  # noqa: S310
        ):
            if answer.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"starmap did not come up within {timeout}s:\n{log()}")


class Service:
    """A server process the tests start, stop, kill and restart on one port."""

    name = "service"
    start_timeout = 30.0
    stop_signal = signal.SIGTERM

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}-{self.port}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> Mapping[str, str] | None:
        return None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already runs"
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=self.env()
            )
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def wait_ready(self) -> None:
        assert self.proc is not None
        wait_for_port(self.port, self.proc, self.start_timeout, self.name)

    def stop(self, timeout: float = 10.0) -> int | None:
        """The stop signal, wait; SIGKILL if it does not go. The exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(self.stop_signal)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(Service):
    name = "redis"

    def __init__(self, workdir: Path, *, password: str | None = None) -> None:
        super().__init__(workdir)
        self.password = password

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run ops/test.sh, which installs it")
        cmd = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir)]  # fmt: skip
        return cmd + (["--requirepass", self.password] if self.password else [])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def env(self, prefix: str | None = None) -> dict[str, str]:
        """The settings that point Star Map here, under its own key prefix (a fresh one by default)."""
        env = {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.port),
            "REDIS_KEY_PREFIX": prefix or f"t{uuid.uuid4().hex[:8]}:",
        }
        if self.password:
            env["REDIS_PASSWORD"] = self.password
        return env


class Azurite(Service):
    """The Azurite table service; in memory unless ``persist`` (then a restart keeps data)."""

    name = "azurite"
    # Azurite saves its database on SIGINT; on SIGTERM it exits without (all is lost).
    stop_signal = signal.SIGINT

    def __init__(self, workdir: Path, *, persist: bool = False) -> None:
        super().__init__(workdir)
        self.persist = persist

    def command(self) -> list[str]:
        if not AZURITE_BIN.exists():
            raise RuntimeError("Azurite is not installed: run ops/test.sh (npm ci in ops/azurite)")
        cmd = [str(AZURITE_BIN), "--tableHost", "127.0.0.1", "--tablePort", str(self.port),
               "--skipApiVersionCheck", "--disableTelemetry", "--loose", "--silent"]  # fmt: skip
        # Azurite takes either a folder to persist in or memory, not both.
        cmd += ["--location", str(self.workdir)] if self.persist else ["--inMemoryPersistence"]
        return cmd

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"TableEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )


class StarmapProcess(Service):
    """A real ``python -m starmap`` with the given environment."""

    name = "starmap"

    def __init__(self, workdir: Path, environ: Mapping[str, str]) -> None:
        super().__init__(workdir)
        self.environ = dict(environ)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "starmap"]

    def env(self) -> Mapping[str, str]:
        return process_env({"HOST": "127.0.0.1", "PORT": str(self.port), **self.environ})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        assert self.proc is not None
        wait_for_liveness(self.url, self.proc, self.start_timeout, self.log)
