"""Star Map benchmarks: real processes, wrk for HTTP, an asyncio client for SSE, JSON out.

    .venv/bin/python ops/bench/bench.py                      # every scenario, embedded mode
    .venv/bin/python ops/bench/bench.py --mode azurite       # Azurite + Redis (likes)
    .venv/bin/python ops/bench/bench.py --only likes,get     # some scenarios

Each HTTP scenario also runs the same wrk load against a bare aiohttp handler
(ops/bench/bare.py) in the same run and reports the ratio: these machines are
noisy, so ratios are what we compare. See ops/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from starmap.control import star_partitions  # noqa: E402
from starmap.settings import load_settings  # noqa: E402
from starmap.stars import STAR_PARTITIONS, STARS, Star, star_to_entity  # noqa: E402
from starmap.storage import TABLES, Op, open_store, partition_chunks  # noqa: E402
from tests.rig import Azurite, RedisServer, StarmapProcess, free_port, wait_for_port  # noqa: E402

HERE = Path(__file__).resolve().parent
WRK_SCRIPT = HERE / "wrk.lua"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def get(url: str, timeout: float = 60) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback only
        return json.loads(answer.read())


def wrk(url: str, *, path: str, method: str = "GET", connections: int = 64, seconds: int = 10,
        stars: int = 1000, keyed: bool = False, header: str = "") -> dict[str, Any]:  # fmt: skip
    """One wrk run; its JSON summary plus throughput (``keyed``: an Idempotency-Key per POST;
    ``header``: "Name: value" on every GET)."""
    env = {**os.environ, "WRK_PATH": path, "WRK_METHOD": method, "STARS": str(stars),
           "WRK_KEYED": str(int(keyed)), "WRK_HEADER": header}  # fmt: skip
    done = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("JSON"))
    summary: dict[str, Any] = json.loads(line[4:])
    summary["rps"] = round(summary["requests"] / summary["seconds"], 1)
    return summary


@contextmanager
def bare_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "bare.py"), str(port)])
    try:
        wait_for_port(port, proc, 15, "bare aiohttp")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


# Star partitions of the tables the bench seeds (--star-partitions): 32 is what a table from
# before the count was recorded keeps.
SEED_PARTITIONS = STAR_PARTITIONS


def seed(env: dict[str, str], count: int) -> list[str]:
    """Write ``count`` stars straight into the store (100 per batch), as a long-lived map would have."""
    settings = load_settings(env, root=ROOT)

    async def write() -> list[str]:
        store = open_store(settings)
        await store.ensure_tables(TABLES)
        partition = (await star_partitions(store, proposed=SEED_PARTITIONS)).of
        now = time.time()
        stars = (
            Star(f"s{i}", ((i * 7919) % 2000) / 1000 - 1, ((i * 104729) % 2000) / 1000 - 1,
                 f"star number {i}", 100.0, now, 0, now + i * 1e-6, now)
            for i in range(1, count + 1)
        )  # fmt: skip
        for chunk in partition_chunks(stars, lambda star: partition(star.id)):  # a batch per partition chunk
            await store.batch(STARS, [Op("insert", star_to_entity(s, partition(s.id))) for s in chunk])
        await store.close()
        return [f"s{i}" for i in range(1, count + 1)]

    return asyncio.run(write())


class Mode:
    """Where the service keeps its data: a temp dir, and Azurite + Redis in that mode."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.services: list[Any] = []
        self.env: dict[str, str] = {"ENVIRONMENT": "production", "LOG_LEVEL": "INFO"}
        if name == "azurite":
            azurite, redis = Azurite(workdir / "azurite"), RedisServer(workdir / "redis")
            azurite.start()
            redis.start()
            self.services = [azurite, redis]
            self.env |= {
                "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": str(redis.port),
            }

    def server_env(self, label: str, **extra: str) -> dict[str, str]:
        return {**self.env, "DATA_DIR": str(self.workdir / label), "STORAGE_TABLE_PREFIX": label, **extra}

    def start(self, label: str, **extra: str) -> StarmapProcess:
        proc = StarmapProcess(self.workdir / f"{label}-proc", self.server_env(label, **extra))
        proc.start_timeout = 120
        proc.start()
        return proc

    def close(self) -> None:
        for service in self.services:
            service.stop()


def ratio(ours: dict[str, Any], bare: dict[str, Any]) -> float:
    return round(ours["rps"] / bare["rps"], 3) if bare["rps"] else 0.0


Pair = tuple[dict[str, Any], dict[str, Any]]


def median_pair(pairs: list[Pair]) -> tuple[list[float], Pair]:
    """Every (ours, bare) pair's ratio, in run order, and the pair whose ratio is the median."""
    ratios = [ratio(ours, bare) for ours, bare in pairs]
    return ratios, pairs[sorted(range(len(pairs)), key=ratios.__getitem__)[len(pairs) // 2]]


def _storage_writes(url: str) -> int:
    """Round trips that carried writes to the store so far (Azure requests), from /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:  # noqa: S310 - loopback only
        text = answer.read().decode()
    found = re.search(r"^starmap_storage_write_requests_total ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, "the service exports no starmap_storage_write_requests"
    return int(float(found.group(1)))


def _single_write_rate(env: dict[str, str], seconds: float = 5.0, concurrency: int = 64) -> float:
    """The store's own rate of single writes (upserts of one entity each, one request each,
    straight from the SDK: the service's store would coalesce them), at ``concurrency``."""
    from azure.data.tables import UpdateMode
    from azure.data.tables.aio import TableServiceClient

    async def run() -> float:
        service = TableServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
        table = await service.create_table_if_not_exists(env["STORAGE_TABLE_PREFIX"] + STARS)
        done, deadline = 0, time.monotonic() + seconds

        async def writer(n: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < deadline:
                entity = {"PartitionKey": "bench", "RowKey": f"w{n}-{i % 50}", "n": i}
                await table.upsert_entity(entity, mode=UpdateMode.REPLACE)
                i += 1
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(writer(n) for n in range(concurrency)))
        took = time.monotonic() - started
        await service.close()
        return done / took

    return round(asyncio.run(run()), 1)


def _like_each(url: str, ids: list[str], concurrency: int = 32) -> int:
    """One like per star (wakes every star's like counter, as a map in use has them); how many 200s."""

    async def run() -> int:
        limit = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:

            async def like(star_id: str) -> bool:
                async with limit, session.post(f"{url}/stars/{star_id}/like", json={}) as answer:
                    return answer.status == 200

            return sum(await asyncio.gather(*(like(i) for i in ids)))

    return asyncio.run(run())


def scenario_likes(mode: Mode, seconds: int, *, keyed: bool = False, runs: int = 1) -> dict[str, Any]:
    """Likes on 1,000 stars; ``keyed``: each with its own Idempotency-Key, as the page sends them.

    With ``runs`` > 1, ours and bare alternate that many times each (both servers up, so the
    machine's drift falls on both sides): the median pair's figures, and every pair's ratio,
    our p99 and both throughputs in ``ratios``, ``p99s`` and ``rps``; the writes and the
    durability check cover every run."""
    label = "likeskeyed" if keyed else "likes"
    ids = seed(mode.server_env(label), 1000)
    server = mode.start(label, API_RATE_LIMIT_TIMES="1000000000")
    pairs: list[Pair] = []
    try:
        warm = _like_each(server.url, ids)  # the steady state: every star's counter awake
        writes_before = _storage_writes(server.url)
        with bare_server() as bare_url:
            for _ in range(runs):
                ours = wrk(server.url, path="/stars/{id}/like", method="POST", seconds=seconds, keyed=keyed)
                pairs.append((ours, wrk(bare_url, path="/stars/{id}/like", method="POST", seconds=seconds)))
        writes = _storage_writes(server.url) - writes_before
        time.sleep(0.5)
        counted = sum(s["likes"] for s in get(f"{server.url}/stars"))
        rss = rss_kb(server.proc.pid)  # type: ignore[union-attr]
    finally:
        server.stop()
    # Every acknowledged like is in the store: read back after a restart.
    again = mode.start(label)
    try:
        durable = sum(s["likes"] for s in get(f"{again.url}/stars"))
    finally:
        again.stop()
    single = _single_write_rate(mode.server_env("singlewrites")) if mode.name == "azurite" else None
    ratios, (ours, bare) = median_pair(pairs)
    acknowledged = warm + sum(o["ok"] for o, _ in pairs)
    return {
        "starmap": ours, "bare": bare, "ratio": ratio(ours, bare), "ratios": ratios,
        "p99s": [o["p99_ms"] for o, _ in pairs], "rps": [(o["rps"], b["rps"]) for o, b in pairs],
        "server_rss_mb": round(rss / 1024, 1),
        "storage_writes": writes,
        "likes_per_storage_write": round((acknowledged - warm) / writes, 2) if writes else None,
        "store_single_writes_per_second": single,
        "acknowledged": acknowledged, "counted": counted, "durable_after_restart": durable,
        # wrk stops mid-flight: likes it never saw answered may still have landed (64 a run).
        "durable_ok": acknowledged <= durable <= acknowledged + 64 * runs,
    }  # fmt: skip


# -- ablate: what each part of a like costs on the wall clock ---------------------------
# ablate.patch adds benchmark-only switches (STARMAP_ABLATE) to a copy of the code in a temp
# directory, never to the checkout: each listed part of a like is left out.
ABLATE_PATCH = HERE / "ablate.patch"
ABLATIONS = ("", "access-line", "event", "read-models", "rate", "store", "journal", "access-line,journal",
             "access-line,event,read-models,rate,store")  # fmt: skip


def _ablated_copy(into: Path) -> Path:
    """This checkout's ``starmap`` package copied under ``into``, the patch applied; the
    directory to put on PYTHONPATH."""
    shutil.copytree(ROOT / "starmap", into / "starmap", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "apply", str(ABLATE_PATCH)], cwd=into, check=True, capture_output=True)
    return into


def scenario_ablate(
    mode: Mode, seconds: int, runs: int, ablations: tuple[str, ...] = ABLATIONS
) -> dict[str, Any]:
    """Likes as in their scenario, on one server per ablation (each its own 1,000 stars, every
    counter awake), in rounds: bare, then every server in turn. Per ablation: the median of
    its rounds' likes/s, of its ratio to the same round's bare, of its likes/s over those of
    the same round's first server (``vs_all``; in ``ABLATIONS`` the first leaves nothing out:
    the steadiest figure, its two runs seconds apart), and of the server's CPU (every thread)
    per like."""
    code = _ablated_copy(mode.workdir / "ablated")
    servers: dict[str, StarmapProcess] = {}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ablations}
    try:
        for i, name in enumerate(ablations):
            label = f"ablate{i}"
            ids = seed(mode.server_env(label), 1000)
            servers[name] = mode.start(label, API_RATE_LIMIT_TIMES="1000000000", STARMAP_ABLATE=name,
                                       PYTHONPATH=str(code))  # fmt: skip
            _like_each(servers[name].url, ids)
        with bare_server() as bare_url:
            for _ in range(runs):
                bare = wrk(bare_url, path="/stars/{id}/like", method="POST", seconds=seconds)
                for name, server in servers.items():
                    pid = server.proc.pid  # type: ignore[union-attr]
                    cpu = _cpu_seconds(pid)
                    ours = wrk(server.url, path="/stars/{id}/like", method="POST", seconds=seconds)
                    cpu = _cpu_seconds(pid) - cpu
                    rounds[name].append({
                        "rps": ours["rps"], "ratio": ratio(ours, bare), "p99_ms": ours["p99_ms"],
                        "cpu_us_per_like": round(1e6 * cpu / max(ours["ok"], 1), 1), "bare_rps": bare["rps"],
                    })  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in rounds[name]), 3)

    for name in ablations:
        for mine, baseline in zip(rounds[name], rounds[ablations[0]], strict=True):
            mine["vs_all"] = round(mine["rps"] / baseline["rps"], 3) if baseline["rps"] else 0.0
    return {
        (name or "nothing left out"): {
            "rps": median(name, "rps"), "ratio": median(name, "ratio"), "vs_all": median(name, "vs_all"),
            "cpu_us_per_like": median(name, "cpu_us_per_like"), "rounds": rounds[name],
        }
        for name in ablations
    }  # fmt: skip


def scenario_get(mode: Mode, seconds: int, runs: int = 1) -> dict[str, Any]:
    """``GET /stars/{random}``; with ``runs`` > 1, ours and bare alternate that many times each
    (both servers up, the machine's drift falls on both sides): the median pair's figures,
    and every pair's ratio in ``ratios``."""
    label = "get"
    seed(mode.server_env(label), 1000)
    server = mode.start(label)
    try:
        with bare_server() as bare_url:
            pairs = [
                (
                    wrk(server.url, path="/stars/{id}", seconds=seconds),
                    wrk(bare_url, path="/stars/{id}", seconds=seconds),
                )
                for _ in range(runs)
            ]
    finally:
        server.stop()
    ratios, (ours, bare) = median_pair(pairs)
    return {"starmap": ours, "bare": bare, "ratio": ratio(ours, bare), "ratios": ratios}


# -- instructions: callgrind counts, not seconds ------------------------------------------
# Wall-clock ratios on these shared machines drift by a tenth between runs, and the machine
# itself has been three times faster one day than the next. Instructions executed per request
# (every thread of the server, under the same wrk load) repeat within a few percent (a like's
# within ~3 %; one get run in four read 13 % high), so run each side twice and a change of a
# few percent shows. They are a proxy: a syscall's kernel time is not counted.

# vgdb (which callgrind_control talks through) names its pipes after the user and the host,
# read from the environment on both sides.
_VGDB_ENV = {"USER": os.environ.get("USER") or "root", "LOGNAME": os.environ.get("LOGNAME") or "root",
             "HOSTNAME": os.uname().nodename, "HOST": os.uname().nodename}  # fmt: skip
_HERE_WITH_VGDB = {**os.environ, **_VGDB_ENV}  # this process's environment, for bare and callgrind_control


def _callgrind(out: Path) -> list[str]:
    """The prefix that runs a command under callgrind, counting nothing until told to."""
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            f"--callgrind-out-file={out}"]  # fmt: skip


class CallgrindStarmap(StarmapProcess):
    """``python -m starmap`` under callgrind."""

    def __init__(self, workdir: Path, environ: dict[str, str], out: Path) -> None:
        super().__init__(workdir, {**environ, **_VGDB_ENV})
        self.out = out
        self.start_timeout = 300

    def command(self) -> list[str]:
        return [*_callgrind(self.out), *super().command()]


def _counted(pid: int, out: Path, load: Callable[[str], dict[str, Any]], url: str) -> dict[str, Any]:
    """Instructions per request of process ``pid`` while ``load`` runs on ``url``: the loop's
    thread and the rest."""
    for stale in out.parent.glob(out.name + ".*"):
        stale.unlink()
    subprocess.run(
        ["callgrind_control", "-i", "on", str(pid)], check=True, capture_output=True, env=_HERE_WITH_VGDB
    )
    result = load(url)
    subprocess.run(
        ["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True, env=_HERE_WITH_VGDB
    )
    subprocess.run(
        ["callgrind_control", "-d", str(pid)], check=True, capture_output=True, env=_HERE_WITH_VGDB
    )
    threads: dict[str, int] = {}
    for dump in sorted(out.parent.glob(out.name + ".*-*")):  # <out>.<dump>-<thread>
        totals = re.search(r"^totals: (\d+)$", dump.read_text(errors="replace"), re.MULTILINE)
        threads[dump.name.rsplit("-", 1)[1]] = int(totals.group(1)) if totals else 0
    requests = result["requests"]
    main, rest = threads.pop("01", 0), sum(threads.values())
    return {"requests": requests, "per_request": round((main + rest) / requests),
            "loop_thread": round(main / requests), "other_threads": round(rest / requests)}  # fmt: skip


def scenario_instructions(mode: Mode, seconds: int) -> dict[str, Any]:
    """Likes and get-one-star as in their scenarios (32 connections), ours and bare under
    callgrind: instructions per request, and bare's over ours (comparable with ``ratio``)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is missing: apt-get install valgrind"}
    work = mode.workdir / "callgrind"
    work.mkdir(exist_ok=True)
    label = "instructions"
    ids = seed(mode.server_env(label), 1000)
    loads = {
        "likes": lambda url: wrk(
            url, path="/stars/{id}/like", method="POST", seconds=seconds, connections=32
        ),
        "get_one_star": lambda url: wrk(url, path="/stars/{id}", seconds=seconds, connections=32),
    }
    report: dict[str, Any] = {}
    server = CallgrindStarmap(work / "server", mode.server_env(label, API_RATE_LIMIT_TIMES="1000000000"),
                              work / "ours.out")  # fmt: skip
    server.start()
    assert server.proc is not None
    try:
        _like_each(server.url, ids)  # every counter awake, as in the likes scenario
        for name, load in loads.items():
            report[name] = {"starmap": _counted(server.proc.pid, work / "ours.out", load, server.url)}
    finally:
        server.stop(timeout=60)
    port = free_port()
    command = [*_callgrind(work / "bare.out"), sys.executable, str(HERE / "bare.py"), str(port)]
    bare = subprocess.Popen(command, env=_HERE_WITH_VGDB, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, bare, 300, "bare aiohttp under callgrind")
        for name, load in loads.items():
            report[name]["bare"] = _counted(bare.pid, work / "bare.out", load, f"http://127.0.0.1:{port}")
            ours, theirs = report[name]["starmap"]["per_request"], report[name]["bare"]["per_request"]
            report[name]["ratio"] = round(theirs / ours, 3)
    finally:
        bare.kill()
        bare.wait()
    return report


def scenario_conditional(mode: Mode, seconds: int) -> dict[str, Any]:
    """``GET /stars`` (1,000 stars) revalidated with its ETag: 304s, against bare and against the 200s."""
    label = "conditional"
    seed(mode.server_env(label), 1000)
    server = mode.start(label)
    try:
        with urllib.request.urlopen(f"{server.url}/stars", timeout=30) as answer:  # noqa: S310 - loopback
            tag = answer.headers["ETag"]
        not_modified = wrk(server.url, path="/stars", seconds=seconds, header=f"If-None-Match: {tag}")
        full = wrk(server.url, path="/stars", seconds=seconds)
    finally:
        server.stop()
    with bare_server() as bare_url:
        bare = wrk(bare_url, path="/stars/{id}", seconds=seconds)
    return {"etag": tag, "not_modified": not_modified, "full_200": full, "bare": bare,
            "ratio_304": ratio(not_modified, bare), "ratio_200": ratio(full, bare)}  # fmt: skip


def _timed_gets(url: str, headers: dict[str, str], times: int) -> tuple[int, float]:
    """Bytes on the wire of one answer, and the median milliseconds of ``times`` of them."""
    took, size = [], 0
    for _ in range(times):
        started = time.perf_counter()
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as answer:  # noqa: S310
            size = len(answer.read())  # urllib does not decompress: these are the wire bytes
        took.append((time.perf_counter() - started) * 1000)
    return size, round(statistics.median(took), 1)


def _like(url: str, star: str) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        f"{url}/stars/{star}/like", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


def _list_encodings(url: str) -> dict[str, Any]:
    """The whole list as identity and as gzip: bytes, median latency warm, and right after a change."""
    result: dict[str, Any] = {}
    for name, headers in (
        ("identity", {}),
        ("gzip", {"Accept-Encoding": "gzip"}),
        ("br", {"Accept-Encoding": "br"}),
    ):
        size, warm = _timed_gets(f"{url}/stars", headers, 20)
        cold = []
        for i in range(5):  # a like drops the cached rendering: render (and compress) again
            _like(url, f"s{i + 1}")
            cold.append(_timed_gets(f"{url}/stars", headers, 1)[1])
        result[name] = {
            "bytes": size,
            "median_ms_cached": warm,
            "median_ms_after_a_change": statistics.median(cold),
        }
    return result


def scenario_list_and_startup(mode: Mode, seconds: int, count: int) -> dict[str, Any]:
    label = "big"
    started = time.monotonic()
    seed(mode.server_env(label), count)
    seeded = time.monotonic() - started
    begin = time.monotonic()
    server = mode.start(label, API_RATE_LIMIT_TIMES="1000000")  # the likes that change the list
    startup = time.monotonic() - begin
    try:
        rss_idle = rss_kb(server.proc.pid)  # type: ignore[union-attr]
        first = time.monotonic()
        listed = get(f"{server.url}/stars")
        first_ms = (time.monotonic() - first) * 1000
        assert len(listed) == count, len(listed)
        ours = wrk(server.url, path="/stars", connections=4, seconds=seconds)
        rss_peak = rss_kb(server.proc.pid)  # type: ignore[union-attr]
        encodings = _list_encodings(server.url)
    finally:
        server.stop()
    return {
        "stars": count, "seed_seconds": round(seeded, 1), "startup_seconds": round(startup, 2),
        "first_list_ms": round(first_ms, 1), "list": ours, "encodings": encodings,
        "rss_idle_mb": round(rss_idle / 1024, 1), "rss_after_lists_mb": round(rss_peak / 1024, 1),
    }  # fmt: skip


def scenario_million(mode: Mode, seconds: int, count: int = 1_000_000) -> dict[str, Any]:
    """A million stars: start-up, memory, and a viewport (1 % of the sky, limit 1000) under load."""
    label = "million"
    started = time.monotonic()
    seed(mode.server_env(label), count)
    seeded = time.monotonic() - started
    begin = time.monotonic()
    server = mode.start(label)
    startup = time.monotonic() - begin
    try:
        rss = rss_kb(server.proc.pid)  # type: ignore[union-attr]
        box = "/stars?bbox=0.1,0.1,0.3,0.3&limit=1000"  # 0.2 x 0.2 of a 2 x 2 sky: 1 %
        found = len(get(server.url + box))
        viewport = wrk(server.url, path=box, connections=4, seconds=seconds)
    finally:
        server.stop()
    return {"stars": count, "seed_seconds": round(seeded, 1), "startup_seconds": round(startup, 2),
            "rss_mb": round(rss / 1024, 1), "viewport_stars": found, "viewport": viewport}  # fmt: skip


async def _steady_likes(url: str, rate: int, seconds: float, stars: int) -> dict[str, Any]:
    """Likes at a steady ``rate`` a second (not as fast as possible): how many were answered 200."""
    import random

    ok = failed = sent = 0

    async def like(session: aiohttp.ClientSession) -> None:
        nonlocal ok, failed
        star = f"s{random.randint(1, stars)}"  # noqa: S311
        try:
            async with session.post(f"{url}/stars/{star}/like", data=b"{}",
                                    headers={"Content-Type": "application/json"}) as answer:  # fmt: skip
                await answer.read()
                ok += answer.status == 200
                failed += answer.status != 200
        except aiohttp.ClientError:
            failed += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        tasks, start = [], time.monotonic()
        while time.monotonic() - start < seconds:
            tasks.append(asyncio.ensure_future(like(session)))
            sent += 1
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*tasks)
        took = time.monotonic() - start
    return {
        "rate_asked": rate,
        "sent": sent,
        "ok": ok,
        "failed": failed,
        "likes_per_second": round(ok / took, 1),
    }


def scenario_list_under_likes(mode: Mode, seconds: int, count: int, rate: int = 1000) -> dict[str, Any]:
    """``GET /stars`` over ``count`` stars (2 connections) under a steady ``rate`` likes a second."""
    from concurrent.futures import ThreadPoolExecutor

    label = "storm"
    seed(mode.server_env(label), count)
    server = mode.start(label, API_RATE_LIMIT_TIMES="1000000000")
    try:
        get(f"{server.url}/stars")  # the first rendering, before the storm
        with ThreadPoolExecutor(1) as pool:
            storm = pool.submit(_run, _steady_likes(server.url, rate, seconds + 2, count))
            time.sleep(1)
            lists = wrk(server.url, path="/stars", connections=2, seconds=seconds)
            likes = storm.result()
    finally:
        server.stop()
    return {"stars": count, "likes_per_second": likes["likes_per_second"], "likes": likes, "list": lists}


async def _subscribe(
    url: str, count: int, on_chunk: Callable[[bytes], None] | None = None
) -> tuple[Any, list[Any]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)
    )
    responses = []
    for start in range(0, count, 200):
        batch = await asyncio.gather(
            *(session.get(f"{url}/events/stars/stream") for _ in range(min(200, count - start)))
        )
        responses.extend(batch)
    for response in responses:
        assert response.status == 200
        await response.content.readany()  # the retry: field
    return session, responses


async def _sse_memory(url: str, pid: int, counts: list[int]) -> list[dict[str, Any]]:
    results = []
    for count in counts:
        await asyncio.sleep(0.5)
        before = rss_kb(pid)
        session, responses = await _subscribe(url, count)
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
        results.append({"subscribers": count, "rss_before_mb": round(before / 1024, 1),
                        "rss_after_mb": round(after / 1024, 1),
                        "kb_per_subscriber": round((after - before) / count, 2)})  # fmt: skip
        for response in responses:
            response.close()
        await session.close()
    return results


class _Subscriber(asyncio.Protocol):
    """A raw SSE subscriber: probes find the send times in what they receive; the rest only read.

    An HTTP client per subscriber (parsing every chunk) would be the bottleneck on
    these two cores long before the server is; raw sockets keep the client cheap.
    """

    MARKER = re.compile(rb'"message":"t=(\d+\.\d+)"')

    def __init__(self, probe: bool, latencies: list[float], path: str = "/events/stars/stream") -> None:
        self.probe, self.latencies, self.received, self.path = probe, latencies, 0, path
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        transport.write(request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if not self.ready.done() and b"retry:" in data:
            self.ready.set_result(None)
        if self.probe:
            now = time.time()
            self.latencies.extend(now - float(m.group(1)) for m in self.MARKER.finditer(data))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sse_latency(
    url: str, subscribers: int, rate: int, seconds: int, probes: int = 50, *,
    paths: Callable[[int], str] | None = None, spread: bool = False, pid: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``paths``: each subscriber's stream (a viewport, say); ``spread``: events all over the sky;
    ``pid``: report the server's CPU time per event while publishing."""
    import random

    import aiohttp

    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    connections: list[tuple[asyncio.BaseTransport, _Subscriber]] = []
    for i in range(subscribers):
        protocol = _Subscriber(i < probes, latencies, paths(i) if paths else "/events/stars/stream")
        transport, _ = await loop.create_connection(lambda p=protocol: p, host, int(port))  # type: ignore[misc]
        connections.append((transport, protocol))
    await asyncio.gather(*(p.ready for _, p in connections))

    async def publish(publisher: aiohttp.ClientSession) -> None:
        x, y = (random.uniform(-1, 1), random.uniform(-1, 1)) if spread else (0, 0)  # noqa: S311
        body = {"x": x, "y": y, "message": f"t={time.time():.6f}"}  # the send time rides along
        async with publisher.post(f"{url}/stars", json=body) as answer:
            assert answer.status == 201

    cpu_before = _cpu_seconds(pid) if pid else 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as publisher:
        interval, sent, inflight = 1.0 / rate, 0, []
        start = time.monotonic()
        while time.monotonic() - start < seconds:  # at the rate asked, not one after another
            inflight.append(asyncio.ensure_future(publish(publisher)))
            sent += 1
            delay = start + sent * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.gather(*inflight)
    await asyncio.sleep(2)
    cpu = _cpu_seconds(pid) - cpu_before if pid else None
    received = sum(p.received for _, p in connections)
    for connection, _ in connections:
        connection.close()
    latencies.sort()
    return {
        "subscribers": subscribers, "probes": probes, "events_sent": sent,
        "events_per_second": round(sent / seconds, 1), "probe_deliveries": len(latencies),
        "expected_probe_deliveries": sent * probes, "bytes_received_by_all": received,
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
        "server_cpu_ms_per_event": round(cpu * 1000 / sent, 3) if cpu is not None and sent else None,
    }  # fmt: skip


def _run(coroutine: Any) -> Any:
    """The client side on uvloop too, where installed: it shares the two cores with the server."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def scenario_fanout(mode: Mode, per_replica: int = 19_900, per_client: int = 9_950) -> dict[str, Any]:
    """Two replicas on one store and one Redis, ``per_replica`` streams each, from client
    processes of ``per_client`` streams (each its own 127.0.0.x); one event, published on the
    first replica, timed to every stream. A process may hold 20,000 files here: a replica's
    streams, its listener, the store and Redis must fit, hence 19,900 and not 20,000."""
    extra = {"SSE_MAX_STREAMS": str(per_replica + 100), "SSE_MAX_STREAMS_PER_CLIENT": "100000",
             "SSE_PING_INTERVAL": "120"}  # fmt: skip
    servers = [mode.start("fanout", **extra), mode.start("fanout", **extra)]
    clients: list[subprocess.Popen[str]] = []
    try:
        rss_before = [rss_kb(s.proc.pid) for s in servers]  # type: ignore[union-attr]
        n = 0
        for server in servers:
            for start in range(0, per_replica, per_client):
                n += 1
                count = min(per_client, per_replica - start)
                clients.append(subprocess.Popen(
                    [sys.executable, str(HERE / "fanout_client.py"), f"127.0.0.1:{server.port}", str(count),
                     f"127.0.0.{n + 1}"], stdout=subprocess.PIPE, text=True,
                ))  # fmt: skip
        opened = 0
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline()
            opened += int(line.split()[1]) if line.startswith("ready") else 0
        time.sleep(2)
        rss_after = [rss_kb(s.proc.pid) for s in servers]  # type: ignore[union-attr]
        body = json.dumps({"x": 0, "y": 0, "message": f"t={time.time():.6f}"}).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"{servers[0].url}/stars", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=30).close()  # noqa: S310
        reports = []
        for client in clients:
            assert client.stdout is not None
            reports.append(json.loads(client.stdout.readline()))
    finally:
        for client in clients:
            client.kill()
        for server in servers:
            server.stop()
    received = sum(r["received"] for r in reports)
    per_stream = [(a - b) / per_replica for a, b in zip(rss_after, rss_before, strict=True)]
    return {
        "replicas": 2, "streams_opened": opened, "streams_that_got_the_event": received,
        "slowest_ms": max(r["max_ms"] or 0 for r in reports), "clients": reports,
        "kb_per_stream": [round(k, 2) for k in per_stream],
    }  # fmt: skip


def scenario_sse(mode: Mode, seconds: int, counts: list[int], latency_subscribers: int) -> dict[str, Any]:
    server = mode.start(
        "sse", SSE_PING_INTERVAL="60", SSE_FLUSH_MS=os.environ.get("BENCH_SSE_FLUSH_MS", "30"),
        SSE_MAX_STREAMS_PER_CLIENT="100000",  # every stream comes from the one load generator
    )  # fmt: skip
    try:
        pid = server.proc.pid  # type: ignore[union-attr]
        memory = _run(_sse_memory(server.url, pid, counts))
        # The streams just closed are noticed at the next event (or ping): let one event
        # reap them before measuring, so the latency is that of a steady state.
        post = urllib.request.Request(  # noqa: S310 - loopback only
            f"{server.url}/stars", data=b'{"x": 0, "y": 0, "message": "settle"}', method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        urllib.request.urlopen(post, timeout=30).close()  # noqa: S310
        time.sleep(3)
        latency = _run(_sse_latency(server.url, latency_subscribers, 100, seconds))
    finally:
        server.stop()
    return {"memory": memory, "latency": latency}


def _viewport(i: int) -> str:
    """Subscriber ``i``'s stream: a box a fifth of the sky wide, somewhere in it."""
    x, y = ((i * 7919) % 1600) / 1000 - 1, ((i * 104729) % 1600) / 1000 - 1
    return f"/events/stars/stream?bbox={x:.3f},{y:.3f},{x + 0.4:.3f},{y + 0.4:.3f}"


def scenario_viewport(mode: Mode, seconds: int, subscribers: int = 2000) -> dict[str, Any]:
    """2k streams, 100 events/s spread over the sky: each a viewport, against every stream unfiltered."""
    result = {}
    for name, paths in (("unfiltered", None), ("viewport", _viewport)):
        server = mode.start(f"viewport{name}", SSE_PING_INTERVAL="60", SSE_MAX_STREAMS_PER_CLIENT="100000")
        try:
            pid = server.proc.pid  # type: ignore[union-attr]
            result[name] = _run(_sse_latency(server.url, subscribers, 100, seconds, probes=0, paths=paths,
                                             spread=True, pid=pid))  # fmt: skip
        finally:
            server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["embedded", "azurite"], default="embedded")
    parser.add_argument(
        "--only",
        default="likes,keyed,get,conditional,list,storm,sse,viewport",
        help="comma-separated scenarios",
    )
    parser.add_argument("--seconds", type=int, default=10, help="length of each load run")
    parser.add_argument("--stars", type=int, default=100_000, help="stars for the list and start-up scenario")
    parser.add_argument("--sse", default="1000,5000,10000", help="subscriber counts for the memory scenario")
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="likes, keyed, get, ablate: ours and bare alternated this many times",
    )
    parser.add_argument(
        "--star-partitions",
        type=int,
        default=STAR_PARTITIONS,
        help="star partitions of the seeded tables (32: as a table from before the count was recorded)",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    global SEED_PARTITIONS
    SEED_PARTITIONS = args.star_partitions
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    wanted = set(args.only.split(","))
    report: dict[str, Any] = {"mode": args.mode, "cpus": os.cpu_count(), "python": sys.version.split()[0],
                              "star_partitions": args.star_partitions,
                              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="starmap-bench-") as tmp:
        mode = Mode(args.mode, Path(tmp))
        try:
            if "likes" in wanted:
                report["likes"] = scenario_likes(mode, args.seconds, runs=args.runs)
            if "keyed" in wanted:
                report["likes_keyed"] = scenario_likes(mode, args.seconds, keyed=True, runs=args.runs)
            if "get" in wanted:
                report["get_one_star"] = scenario_get(mode, args.seconds, args.runs)
            if "ablate" in wanted:
                report["ablate"] = scenario_ablate(mode, args.seconds, args.runs)
            if "instructions" in wanted:
                report["instructions"] = scenario_instructions(mode, args.seconds)
            if "conditional" in wanted:
                report["conditional"] = scenario_conditional(mode, args.seconds)
            if "list" in wanted:
                report["list_all_and_startup"] = scenario_list_and_startup(mode, args.seconds, args.stars)
            if "million" in wanted:
                report["million_stars"] = scenario_million(mode, args.seconds)
            if "storm" in wanted:
                report["list_under_likes"] = scenario_list_under_likes(mode, args.seconds, args.stars)
            if "sse" in wanted:
                counts = [int(c) for c in args.sse.split(",")]
                report["sse"] = scenario_sse(mode, args.seconds, counts, latency_subscribers=2000)
            if "fanout" in wanted:
                report["fanout_two_replicas"] = scenario_fanout(mode)
            if "viewport" in wanted:
                report["viewport_streams"] = scenario_viewport(mode, args.seconds)
        finally:
            mode.close()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
