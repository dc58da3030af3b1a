"""The ``starmap`` command: every subcommand run as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from starmap import __version__
from starmap.control import star_partitions
from starmap.settings import load_settings
from starmap.stars import BUCKETS, STAR_PARTITIONS, STARS, Star, StarPartitions, bucket, star_to_entity
from starmap.storage import TableStore, open_store
from starmap.tools.backup import BadExport, read_export

from .conftest import Cli, MakeProcess
from .rig import ROOT, Azurite, StarmapProcess, free_port, get_json, process_env, wait_for_liveness
from .tables import everything, ours

pytestmark = pytest.mark.slow

SECRET_KEY = "c2VjcmV0LWFjY291bnQta2V5LW5vdC1mb3ItbG9ncw=="


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_help_prints_help_and_serves_nothing(cli: Cli) -> None:
    done = cli("--help", timeout=20)
    assert done.returncode == 0
    for command in (
        "serve",
        "dev",
        "check-config",
        "init-tables",
        "import-legacy",
        "export",
        "import",
        "probe",
    ):
        assert command in done.stdout
        sub = cli(command, "--help", timeout=20)
        assert sub.returncode == 0 and sub.stdout.startswith(f"usage: starmap {command}")
    assert cli("--version").stdout.strip() == f"starmap {__version__}"
    assert cli("no-such-command").returncode == 2


def test_check_config_prints_effective_settings_with_secrets_redacted(cli: Cli) -> None:
    connection = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={SECRET_KEY};TableEndpoint=http://127.0.0.1:1/a;"
    done = cli(
        "check-config",
        PORT="9123",
        ADMIN_API_KEY="admin-secret-xyz",
        AZURE_STORAGE_CONNECTION_STRING=connection,
    )
    assert done.returncode == 0, done.stderr
    assert SECRET_KEY not in done.stdout + done.stderr and "admin-secret-xyz" not in done.stdout
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert lines["PORT"].split() == ["PORT", "9123", "(environment)"]
    assert lines["ADMIN_API_KEY"].split() == ["ADMIN_API_KEY", "<redacted>", "(environment)"]
    assert lines["REDIS_HOST"].split() == ["REDIS_HOST", "(unset)", "(default)"]
    bad = cli("check-config", PORT="notaport")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "starmap: configuration error: PORT='notaport': expected an integer"


def test_check_config_names_the_env_file_a_value_came_from(backend_env: dict[str, str]) -> None:
    env = process_env({**backend_env, "ENVIRONMENT": "development"})
    done = subprocess.run(
        [sys.executable, "-m", "starmap", "check-config"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("API_CORS_ORIGINS"))
    assert line.split() == ["API_CORS_ORIGINS", "*", f"({ROOT / 'ops/env/.env.development'})"]


async def test_init_tables_creates_every_table(cli: Cli, tmp_path: Path, backend_env: dict[str, str]) -> None:
    done = cli("init-tables")
    assert done.returncode == 0, done.stderr
    assert "tables ready" in done.stdout
    store = open_store(load_settings(backend_env, root=tmp_path))
    try:
        assert await everything(store) == {t: [] for t in ("Stars", "Users", "Emails", "UserStars")}
        assert (await store.query("StarmapControl")).items == []
    finally:
        await store.close()


def test_init_tables_with_an_unreachable_store_fails_in_one_line(cli: Cli) -> None:
    unreachable = (
        f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={SECRET_KEY};"
        f"TableEndpoint=http://127.0.0.1:{free_port()}/a;"
    )
    done = cli("init-tables", AZURE_STORAGE_CONNECTION_STRING=unreachable, STORAGE_TIMEOUT="1", timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and SECRET_KEY not in done.stderr


def test_probe_answers_for_liveness_and_readiness(cli: Cli, make_process: MakeProcess) -> None:
    proc = make_process()
    for which in ("liveness", "readiness"):
        done = cli("probe", which, HOST="127.0.0.1", PORT=str(proc.port))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"starmap probe {which}: {proc.url}/health/{which}: 200"
    nobody = cli("probe", "readiness", PORT=str(free_port()))
    assert nobody.returncode == 1 and "Connection refused" in nobody.stderr
    assert cli("probe", "readiness", "--url", proc.url).returncode == 0
    assert cli("probe", "sideways").returncode == 2


def test_python_m_starmap_with_no_arguments_still_serves(make_process: MakeProcess) -> None:
    proc = make_process()  # the rig runs `python -m starmap` with no arguments
    assert get_json(f"{proc.url}/health/liveness")[0] == 200


def wait_for_lines(log: Path, text: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while log.read_text().count(text) < count:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_dev_restarts_the_service_when_the_code_changes(backend_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "dev.log"
    env = process_env({**backend_env, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "INFO"})
    probe = ROOT / "starmap" / f"_dev_probe_{uuid.uuid4().hex[:8]}.py"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "starmap", "dev"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_liveness(f"http://127.0.0.1:{port}", proc, 30)
        wait_for_lines(log_path, "ready: listening on http://127.0.0.1", 1)
        probe.write_text("# a change for `starmap dev` to see\n")
        wait_for_lines(log_path, "ready: listening on http://127.0.0.1", 2)  # the service started again
        wait_for_liveness(f"http://127.0.0.1:{port}", proc, 30)
    finally:
        probe.unlink(missing_ok=True)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_export_from_sqlite_import_into_azurite_keeps_ids_and_likes(
    cli: Cli, make_process: MakeProcess, azurite: Azurite, tmp_path: Path, backend_env: dict[str, str]
) -> None:
    laptop = make_process(API_RATE_LIMIT_TIMES="1000")
    async with ClientSession() as session:
        user = await (
            await session.post(f"{laptop.url}/users", json={"name": "Ann", "email": "ann@example.org"})
        ).json()
        stars = []
        for i in range(30):
            body = {"x": i / 40, "y": -i / 40, "message": f"s{i}", "user_id": user["id"]}
            stars.append(await (await session.post(f"{laptop.url}/stars", json=body)).json())
        for i, star in enumerate(stars[:10]):
            for _ in range(i + 1):
                async with session.post(
                    f"{laptop.url}/stars/{star['id']}/like", json={"user_id": user["id"]}
                ) as r:
                    assert r.status == 200
    backup = tmp_path / "backup.jsonl"
    exported = cli("export", str(backup))
    assert exported.returncode == 0, exported.stderr
    assert "Stars 30" in exported.stderr
    header = json.loads(backup.read_text().splitlines()[0])
    assert header["starmap_export"] == 1
    cloud_env = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "STORAGE_TABLE_PREFIX": "c" + uuid.uuid4().hex[:10],
    }
    imported = cli("import", str(backup), **cloud_env)
    assert imported.returncode == 0, imported.stderr
    assert "Stars: 30 rows in the file; written 30, already there 0" in imported.stdout
    again = cli("import", str(backup), **cloud_env)
    assert "Stars: 30 rows in the file; written 0, already there 30" in again.stdout
    source = open_store(load_settings(backend_env, root=tmp_path))
    target = open_store(load_settings({**backend_env, **cloud_env}, root=tmp_path))
    try:
        for table in ("Stars", "Users", "Emails", "UserStars"):
            assert await ours(target, table) == await ours(source, table), table
    finally:
        await source.close()
        await target.close()
    cloud = StarmapProcess(tmp_path / "cloud", {**backend_env, **cloud_env})
    cloud.start()
    try:
        served = {s["id"]: s["likes"] for s in get_json(f"{cloud.url}/stars")[1]}
        assert served == {s["id"]: (i + 1 if i < 10 else 0) for i, s in enumerate(stars)}
        liked = get_json(f"{cloud.url}/users/{user['id']}/stars?relation=liked")[1]
        assert {s["id"] for s in liked} == {s["id"] for s in stars[:10]}
    finally:
        cloud.stop()


async def test_stars_go_only_into_a_store_partitioned_as_they_were(
    cli: Cli, tmp_path: Path, store: TableStore, backend_env: dict[str, str]
) -> None:
    """Rows keep their keys: an empty store takes the export's count, another one must have it."""
    await store.insert(STARS, star_to_entity(Star("vega", 0, 0, "m", 100, 0, 3, 0, 0), bucket("vega")))
    backup = tmp_path / "backup.jsonl"
    assert cli("export", str(backup)).returncode == 0
    assert json.loads(backup.read_text().splitlines()[0])["star_partitions"] == BUCKETS

    def other_store() -> tuple[TableStore, str]:
        prefix = "p" + uuid.uuid4().hex[:10]
        return open_store(
            load_settings({**backend_env, "STORAGE_TABLE_PREFIX": prefix}, root=tmp_path)
        ), prefix

    empty, prefix = other_store()
    try:
        assert cli("import", str(backup), STORAGE_TABLE_PREFIX=prefix).returncode == 0
        assert await star_partitions(empty) == StarPartitions(BUCKETS)
        assert (await empty.get(STARS, bucket("vega"), "vega")).entity["likes"] == 3
    finally:
        await empty.close()
    newer, prefix = other_store()
    try:
        await newer.ensure_tables(["StarmapControl"])
        assert await star_partitions(newer) == StarPartitions(STAR_PARTITIONS)  # a service started on it
        refused = cli("import", str(backup), STORAGE_TABLE_PREFIX=prefix)
        assert refused.returncode == 2
        assert f"spread over {BUCKETS} partitions and this store's over {STAR_PARTITIONS}" in refused.stderr
        assert await ours(newer, "Stars") == {}
    finally:
        await newer.close()


async def test_import_of_a_broken_file_writes_nothing(cli: Cli, tmp_path: Path, store: TableStore) -> None:
    lines: list[Any] = [
        {"starmap_export": 1, "tables": ["Stars"]},
        {"table": "Stars", "entity": {"PartitionKey": "b01", "RowKey": "a", "x": 0.5}},
        {"table": "Stars", "entity": {"PartitionKey": "b01", "RowKey": "b", "x": [1, 2]}},
    ]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    done = cli("import", str(broken))
    assert done.returncode == 2
    assert "line 3: property 'x': list is not a table value" in done.stderr
    assert await ours(store, "Stars") == {}
    not_export = tmp_path / "other.jsonl"
    not_export.write_text('{"hello": 1}\n')
    assert "line 1: not a Star Map export" in cli("import", str(not_export)).stderr


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "the file is empty"),
        (["{oops"], "line 1: not JSON"),
        (['{"hello": 1}'], "line 1: not a Star Map export"),
        (['{"starmap_export": 1, "star_partitions": "8"}'], "line 1: 'star_partitions' must be"),
        (['{"starmap_export": 1, "star_partitions": 8.0}'], "line 1: 'star_partitions' must be"),
        (['{"starmap_export": 1}', "{oops"], "line 2: not JSON"),
        (['{"starmap_export": 1}', '{"table": "Stars", "entity": []}'], "line 2: 'entity' must be an object"),
    ],
)
def test_an_export_is_refused_at_its_first_bad_line(lines: list[str], message: str) -> None:
    with pytest.raises(BadExport, match=message):
        read_export(iter(lines))


def test_an_export_names_its_star_partitions_and_older_ones_mean_32() -> None:
    row = '{"table": "Stars", "entity": {"PartitionKey": "b01", "RowKey": "a", "x": 0.5}}'
    assert read_export(iter(['{"starmap_export": 1, "star_partitions": 8}', row])).star_partitions.count == 8
    older = read_export(iter(['{"starmap_export": 1}', row]))
    assert older.star_partitions.count == BUCKETS and [r.entity["RowKey"] for r in older.rows] == ["a"]
