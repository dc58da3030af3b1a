"""Upgrading from the original service, end to end, on SQLite and on Azurite.

The tests write the original layout themselves (``legacy_data``), then run the real
``starmap`` command and the real service as processes, as an operator would.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiohttp import ClientSession

from starmap.control import star_partitions
from starmap.stars import STAR_PARTITIONS, Star, bucket, star_to_entity
from starmap.storage import DATA_TABLES, TableStore, iter_entities
from starmap.storage.azure import AzureTableStore
from starmap.users import User, user_to_entity

from .conftest import Cli, MakeClient, MakeProcess
from .legacy_data import many_stars, write_original, write_rows
from .rig import AZURITE_KEY, Azurite, get_json, process_env
from .tables import everything, ours

pytestmark = pytest.mark.slow

ADMIN_KEY = "an-admin-key-of-thirty-two-chars"


async def test_the_service_starts_over_original_rows_and_counts_them(
    store: TableStore, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    original = await write_original(store)
    with caplog.at_level(logging.INFO):
        client = await make_client(ADMIN_API_KEY=ADMIN_KEY)
    assert (await client.get("/health/readiness")).status == 200
    assert (await (await client.get("/stars")).json()) == []  # left alone, not shown half-read
    info = await (await client.get("/debug/table-info")).json()
    assert info["foreign_rows"]["Stars"]["not_imported"] == len(original.stars)
    assert info["foreign_rows"]["Users"]["not_imported"] == len(original.users)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    [stars_line] = [w for w in warnings if w.startswith("Stars:")]
    assert f"{len(original.stars)} rows in a layout this service does not know" in stars_line
    assert "starmap import-legacy" in stars_line
    assert any(w.startswith("Users: 5 rows") for w in warnings)
    # Likes, creates and an admin clear leave them alone too.
    created = await (await client.post("/stars", json={"x": 0, "y": 0, "message": "new"})).json()
    assert (await client.post(f"/stars/{created['id']}/like", json={})).status == 200
    assert len(await ours(store, "Stars")) == 1
    assert len([1 async for _ in iter_entities(store, "Stars")]) == len(original.stars) + 1
    cleared = await client.delete("/admin/stars", headers={"X-API-Key": ADMIN_KEY})
    assert (await cleared.json())["count"] == 1
    assert len([1 async for _ in iter_entities(store, "Stars")]) == len(original.stars)


async def test_a_real_process_over_original_rows_is_ready(
    store: TableStore, make_process: MakeProcess
) -> None:
    """The reported failure: `python -m starmap` over the original tables died at start-up."""
    original = await write_original(store)
    proc = make_process()
    status, body = get_json(f"{proc.url}/health/readiness")
    assert (status, body["status"]) == (200, "ready")
    log = proc.log()
    assert "Traceback" not in log
    assert f"Stars: {len(original.stars)} rows in a layout this service does not know" in log


async def test_dry_run_writes_nothing_and_says_what_it_would_do(store: TableStore, cli: Cli) -> None:
    original = await write_original(store)
    before = await everything(store)
    done = cli("import-legacy", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: nothing was written" in done.stdout
    assert f"Stars: {len(original.stars)} rows of the original service; would import 46" in done.stdout
    assert "Users: 5 rows of the original service; would import 3" in done.stdout
    assert await everything(store) == before


async def test_import_brings_every_importable_row_and_a_second_run_nothing_twice(
    store: TableStore, cli: Cli
) -> None:
    original = await write_original(store)
    done = cli("import-legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Stars: 51 rows of the original service; imported 46, already there 0, skipped 5" in out
    assert "Users: 5 rows of the original service; imported 3, already there 0, skipped 2" in out
    for skipped, reason in original.skipped_stars.items():
        assert any(
            line.startswith("  skipped") and skipped in line and reason in line for line in out.splitlines()
        )
    assert (
        "  skipped USER/u-alice2: the address 'ALICE@Example.com' is held by the older user 'u-alice'" in out
    )
    assert "  skipped USER/u-nomail: the address 'not-an-address' is not valid" in out
    assert "Brightness is NaN: imported at the minimum brightness" in out
    stars = await ours(store, "Stars")
    assert set(stars) == set(original.importable_stars)
    for star_id, row in original.importable_stars.items():
        star = stars[star_id]
        assert (star["x"], star["y"], star["message"]) == (float(row["X"]), float(row["Y"]), row["Message"])
        assert star["likes"] == 0 and star["layout"] == 1
        assert star["t0"] == star["last_liked"] == row["LastLiked"]
    users = await ours(store, "Users")
    assert set(users) == original.importable_users
    assert users["u-alice"]["email"] == "alice@example.com"
    claims = await ours(store, "Emails")
    assert {c["user_id"] for c in claims.values()} == original.importable_users
    # The source rows are untouched.
    assert len([1 async for s in iter_entities(store, "Stars") if s.partition_key.startswith("STAR_")]) == 50
    before = await everything(store)
    again = cli("import-legacy")
    assert again.returncode == 0
    assert "imported 0, already there 46, skipped 5" in again.stdout
    assert "imported 0, already there 3, skipped 2" in again.stdout
    after = await everything(store)
    assert {t: rows for t, rows in after.items() if t != "StarmapControl"} == before


async def test_placeholder_emails_import_every_user_and_keep_the_original_address(
    store: TableStore, cli: Cli
) -> None:
    await write_original(store)
    done = cli("import-legacy", "--placeholder-emails", "--repair")
    assert done.returncode == 0, done.stdout
    assert "imported 5, already there 0, skipped 0" in done.stdout
    assert "imported 48, already there 0, skipped 3" in done.stdout  # repaired: far-out, long-message
    users = await ours(store, "Users")
    assert users["u-alice2"]["email"] == "u-alice2@legacy.invalid"
    assert users["u-alice2"]["legacy_email"] == " ALICE@Example.com"
    assert users["u-nomail"]["legacy_email"] == "not-an-address"


async def any_imported(store: TableStore, probe: int) -> bool:
    """Cheap, so it can poll fast: has any row landed in one of the target partitions?"""
    return bool((await store.query("Stars", f"b{probe % STAR_PARTITIONS:02d}", limit=1)).items)


async def test_kill_9_mid_import_then_a_second_run_completes_it_exactly(
    backend: str, store: TableStore, backend_env: dict[str, str], tmp_path: Path, cli: Cli
) -> None:
    # Enough rows that the import outlasts the polling by far (SQLite writes ~50k rows/s).
    rows = many_stars(30_000 if backend == "sqlite" else 3000)
    await write_rows(store, "Stars", rows)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "starmap", "import-legacy",
        env=process_env(backend_env), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, probe = time.monotonic() + 60, 0
        while (
            not await any_imported(store, probe) and time.monotonic() < deadline and proc.returncode is None
        ):
            probe += 1
            await asyncio.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        await proc.wait()
    landed = len(await ours(store, "Stars"))
    assert 0 < landed < len(rows), f"the kill did not land mid-way ({landed} of {len(rows)})"
    done = cli("import-legacy")
    assert done.returncode == 0, done.stdout + done.stderr
    stars = await ours(store, "Stars")
    assert set(stars) == {r["RowKey"] for r in rows}
    assert f"imported {len(rows) - landed}, already there {landed}, skipped 0" in done.stdout


async def test_a_running_service_shows_the_import_within_seconds(
    store: TableStore, make_process: MakeProcess, cli: Cli
) -> None:
    original = await write_original(store)
    proc = make_process(STORAGE_RELOAD_POLL_SECONDS="0.5")
    assert get_json(f"{proc.url}/stars")[1] == []
    async with ClientSession() as session:
        stream = await session.get(f"{proc.url}/events/stars/stream")
        assert stream.status == 200
        assert cli("import-legacy").returncode == 0
        started = time.monotonic()
        while len(get_json(f"{proc.url}/stars")[1]) < len(original.importable_stars):
            assert time.monotonic() - started < 10, "the running service did not pick up the import"
            await asyncio.sleep(0.2)
        seen = b""
        while b'"resync"' not in seen:  # open maps are told to refetch
            seen += await asyncio.wait_for(stream.content.readany(), 10)
        stream.close()
        star_id = next(iter(original.importable_stars))
        async with session.post(f"{proc.url}/stars/{star_id}/like", json={}) as liked:
            assert liked.status == 200
            assert (await liked.json())["likes"] == 1
        users = get_json(f"{proc.url}/users")[1]
        assert {u["id"] for u in users} == original.importable_users


async def test_delete_source_removes_only_rows_verified_imported(store: TableStore, cli: Cli) -> None:
    original = await write_original(store)
    done = cli("import-legacy", "--delete-source")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "source rows deleted 46, kept 0" in done.stdout
    assert "source rows deleted 3, kept 0" in done.stdout
    partition = (await star_partitions(store)).of
    left = {s.row_key async for s in iter_entities(store, "Stars") if s.partition_key != partition(s.row_key)}
    assert left == set(original.skipped_stars)  # the twin's losing row among them
    users_left = {s.row_key async for s in iter_entities(store, "Users") if s.partition_key == "USER"}
    assert users_left == set(original.skipped_users)
    assert len(await ours(store, "Stars")) == len(original.importable_stars)
    assert len([1 async for _ in iter_entities(store, "UserStars")]) == 1  # the hand-made row, left alone


async def test_rows_at_our_keys_that_cannot_be_read_are_404_never_500(
    store: TableStore, make_client: MakeClient
) -> None:
    """A later version's row, and one of ours edited by hand past reading: counted, never half-read."""
    newer = {
        **star_to_entity(Star("from-the-future", 0, 0, "m", 100, 0, 0, 0, 0), bucket("from-the-future")),
        "layout": 2,
    }
    broken = {
        **star_to_entity(Star("hand-edited", 0, 0, "m", 100, 0, 0, 0, 0), bucket("hand-edited")),
        "x": "left",
    }
    user = {**user_to_entity(User("later-user", "Name", "later@example.org", 0)), "layout": 2}
    await write_rows(store, "Stars", [newer, broken])
    await write_rows(store, "Users", [user])
    client = await make_client()
    info = await (await client.get("/debug/table-info")).json()
    assert info["foreign_rows"]["Stars"] == {
        "not_imported": 0, "imported_source_kept": 0, "newer_layout": 1, "unreadable": 1,
    }  # fmt: skip
    assert info["foreign_rows"]["Users"]["newer_layout"] == 1
    for star_id in ("from-the-future", "hand-edited"):
        for answer in (
            await client.get(f"/stars/{star_id}"),
            await client.post(f"/stars/{star_id}/like", json={}),
        ):
            assert answer.status == 404, await answer.text()
    assert (await client.get("/users/later-user")).status == 404
    liked_by = await client.post("/stars", json={"x": 0, "y": 0, "message": "m", "user_id": "later-user"})
    assert liked_by.status == 404


async def test_original_rows_in_another_account_are_imported_into_the_configured_store(
    azurite: Azurite, store: TableStore, cli: Cli
) -> None:
    """The original account is read (through --source-connection-string), the configured store written."""
    prefix = "src" + uuid.uuid4().hex[:10]
    source = AzureTableStore.from_connection_string(
        azurite.connection_string, table_prefix=prefix, max_concurrency=32, timeout=10.0
    )
    try:
        await source.ensure_tables(DATA_TABLES)
        original = await write_original(source)
        before = await everything(source)
        done = cli(
            "import-legacy", "--source-connection-string", "-", "--source-table-prefix", prefix,
            stdin=azurite.connection_string + "\n",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "imported 46, already there 0, skipped 5" in done.stdout
        assert set(await ours(store, "Stars")) == set(original.importable_stars)
        assert set(await ours(store, "Users")) == original.importable_users
        assert await everything(source) == before  # the source is only read
        assert AZURITE_KEY not in done.stdout + done.stderr
    finally:
        await source.close()
