"""``starmap import-legacy``: the original service's rows brought into this service's layout.

Idempotent and resumable by construction: a star or user keeps its id, so its target
key is fixed; every write is an insert (a key already there is counted as such, never
overwritten), stars go in atomic batches of one target partition, and a user's
address claim names the user, so a claim left by an interrupted run is recognised
as its own. Run it again after anything (``kill -9`` included) and it completes
what is missing, exactly. Source rows are only read, unless ``delete_source``: then
a source row is deleted (at the version that was read) only once the row imported
from it has been read back from the target and matches.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from ..backoff import retry
from ..control import request_reload, star_partitions
from ..errors import AlreadyExists, NotFound, PreconditionFailed, StorageUnavailable
from ..layout import RowKind, classify
from ..legacy import Converted, Options, choose_stars, choose_users, convert_star, convert_user, legacy_email
from ..progress import Progress
from ..stars import STAR_FIELDS, STARS, Star, StarPartitions, bucket, star_to_entity
from ..storage import TABLES, Op, Stored, TableStore, iter_entities, partition_chunks
from ..users import (
    EMAILS,
    USER_FIELDS,
    USER_STARS,
    USERS,
    User,
    claim_entity,
    email_key,
    is_relation,
    user_to_entity,
)
from .report import ImportReport, TableReport

__all__ = ("ImportReport", "TableReport", "import_legacy")

log = logging.getLogger("starmap.import")

PARALLEL: Final = 4  # batches in flight: Azurite resets connections when flooded
RELOAD_EVERY: Final = 10.0  # seconds between reloads asked of running replicas while writing


async def _rows(store: TableStore, table: str) -> list[Stored]:
    """Every row of a table; none if the table does not exist."""
    try:
        return await retry(lambda: _all(store, table))
    except NotFound:
        return []


async def _all(store: TableStore, table: str) -> list[Stored]:
    return [row async for row in iter_entities(store, table)]


class _Run:
    def __init__(
        self,
        source: TableStore,
        target: TableStore,
        options: Options,
        *,
        same: bool,
        partitions: StarPartitions,
    ) -> None:
        self.source, self.target, self.options, self.same = source, target, options, same
        self.partitions = partitions  # the target's
        self.progress: Progress | None = None
        self.reloaded = time.monotonic()
        self.parallel = asyncio.Semaphore(PARALLEL)

    def own_key(self, table: str, row: Stored) -> bool:
        """A row at the key the target gives its id (whatever its layout)."""
        partition = self.partitions.of(row.row_key) if table == STARS else bucket(row.row_key)
        return row.partition_key == partition

    async def maybe_reload(self, *, force: bool = False) -> None:
        """Running replicas reload now and then while rows arrive, and once at the end."""
        if force or time.monotonic() - self.reloaded >= RELOAD_EVERY:
            self.reloaded = time.monotonic()
            try:
                await request_reload(self.target, "import-legacy")
            except StorageUnavailable as exc:
                log.warning("could not ask running replicas to reload: %s", exc)

    def advance(self, rows: int) -> None:
        if self.progress is not None:
            self.progress.advance(rows)

    # -- reading and planning -------------------------------------------------------

    async def read(
        self, table: str, required: Sequence[str]
    ) -> tuple[list[Stored], list[Stored], list[Stored]]:
        """Original rows in the source, rows of a newer layout there, rows at our keys in the target."""
        source_rows = await _rows(self.source, table)
        original, newer = [], []
        for row in source_rows:
            kind = classify(row.entity, partition=bucket(row.row_key), required=required)
            if kind is RowKind.ORIGINAL:
                original.append(row)
            elif kind is RowKind.NEWER and not self.own_key(table, row):
                newer.append(row)
        target_rows = source_rows if self.same else await _rows(self.target, table)
        return original, newer, [r for r in target_rows if self.own_key(table, r)]

    async def plan_stars(self) -> tuple[TableReport, list[Converted[Star]], list[Stored], dict[str, Stored]]:
        original, newer, present = await self.read(STARS, STAR_FIELDS)
        report = TableReport(STARS, found=len(original))
        for row in newer:
            report.skipped.append((row.partition_key, row.row_key, "a newer layout than this version knows"))
        report.found += len(newer)
        chosen = choose_stars(convert_star(row.entity, self.options) for row in original)
        return report, chosen, original, {r.row_key: r for r in present}

    async def plan_users(self) -> tuple[TableReport, list[Converted[User]], list[Stored], dict[str, Stored]]:
        original, newer, present = await self.read(USERS, USER_FIELDS)
        report = TableReport(USERS, found=len(original) + len(newer))
        for row in newer:
            report.skipped.append((row.partition_key, row.row_key, "a newer layout than this version knows"))
        claims = await _rows(self.target, EMAILS)
        holders = {str(c.row_key): str(c.entity.get("user_id")) for c in claims}
        now = time.time()
        chosen = choose_users(
            (convert_user(row.entity, self.options, now) for row in original), self.options, holders=holders
        )
        return report, chosen, original, {r.row_key: r for r in present}

    async def relations_report(self) -> TableReport:
        """``UserStars``: the original service never wrote it; whatever is there is left alone."""
        rows = [r for r in await _rows(self.source, USER_STARS) if not is_relation(r.entity)]
        report = TableReport(USER_STARS, found=len(rows))
        reason = "the original service never wrote UserStars: rows found there are left alone"
        report.skipped.extend((r.partition_key, r.row_key, reason) for r in rows)
        return report

    # -- writing ----------------------------------------------------------------------

    async def write_stars(self, report: TableReport, todo: list[Star]) -> None:
        chunks = partition_chunks(todo, lambda star: self.partitions.of(star.id))
        await asyncio.gather(*(self.write_star_chunk(report, chunk) for chunk in chunks))

    def row(self, star: Star) -> dict[str, Any]:
        return star_to_entity(star, self.partitions.of(star.id))

    async def write_star_chunk(self, report: TableReport, chunk: list[Star]) -> None:
        async with self.parallel:
            try:
                await retry(lambda: self.target.batch(STARS, [Op("insert", self.row(s)) for s in chunk]))
                report.imported += len(chunk)
            except AlreadyExists:  # some of them are there (a run that was cut short): one at a time
                for star in chunk:
                    await self.insert_one(report, STARS, star.id, self.row(star))
            except StorageUnavailable as exc:
                report.failed.extend((self.partitions.of(s.id), s.id, f"not written: {exc}") for s in chunk)
            self.advance(len(chunk))
            await self.maybe_reload()

    async def insert_one(
        self, report: TableReport, table: str, row_id: str, entity: Mapping[str, Any]
    ) -> None:
        try:
            await retry(lambda: self.target.insert(table, entity))
            report.imported += 1
        except AlreadyExists:
            report.already += 1
        except StorageUnavailable as exc:
            report.failed.append((str(entity["PartitionKey"]), row_id, f"not written: {exc}"))

    async def write_user(self, report: TableReport, item: Converted[User], source: Stored) -> None:
        user = item.value
        assert user is not None
        async with self.parallel:
            key = email_key(user.email)
            try:
                try:
                    await retry(lambda: self.target.insert(EMAILS, claim_entity(key, user.id, time.time())))
                except AlreadyExists:
                    claim = await retry(lambda: self.target.get(EMAILS, bucket(key), key))
                    if claim.entity.get("user_id") != user.id:  # taken since the plan was made
                        report.skipped.append(
                            (item.partition, item.row, f"the address {user.email!r} was taken meanwhile")
                        )
                        return
                entity = user_to_entity(user)
                original = legacy_email(item, source.entity)
                if original is not None:
                    entity["legacy_email"] = original
                await self.insert_one(report, USERS, user.id, entity)
            except (StorageUnavailable, NotFound) as exc:
                report.failed.append((item.partition, item.row, f"not written: {exc}"))
            finally:
                self.advance(1)

    # -- deleting the source ------------------------------------------------------------

    async def delete_verified(
        self, report: TableReport, table: str, chosen: Sequence[Converted[Any]], sources: Sequence[Stored],
        matches: Callable[[Any, Mapping[str, Any]], bool],
    ) -> None:  # fmt: skip
        """Delete each source row whose import reads back from the target as it was written."""
        present = {r.row_key: r.entity for r in await _rows(self.target, table) if self.own_key(table, r)}
        verified: list[Stored] = []
        for item, source in zip(chosen, sources, strict=True):
            if item.value is None:
                continue
            imported = present.get(item.value.id)
            if imported is None:
                report.source_kept.append((item.partition, item.row, "not in the target: kept"))
            elif not matches(item.value, imported):
                report.source_kept.append((item.partition, item.row, "the row with this id differs: kept"))
            else:
                verified.append(source)
        for chunk in partition_chunks(verified, lambda row: row.partition_key):
            await self.delete_chunk(report, table, chunk)

    async def delete_chunk(self, report: TableReport, table: str, rows: list[Stored]) -> None:
        ops = [Op.delete(r.partition_key, r.row_key, r.etag) for r in rows]
        try:
            await retry(lambda: self.source.batch(table, ops))
            report.source_deleted += len(rows)
        except (PreconditionFailed, NotFound):  # one changed or went since it was read: one at a time
            for row in rows:
                try:
                    op = Op.delete(row.partition_key, row.row_key, row.etag)
                    await retry(functools.partial(self.source.batch, table, [op]))
                    report.source_deleted += 1
                except (PreconditionFailed, NotFound):
                    report.source_kept.append(
                        (row.partition_key, row.row_key, "changed or gone since read: kept")
                    )
        except StorageUnavailable as exc:
            report.failed.extend((r.partition_key, r.row_key, f"source not deleted: {exc}") for r in rows)
        self.advance(len(rows))


def _same_star(star: Star, entity: Mapping[str, Any]) -> bool:
    fields = {"x": star.x, "y": star.y, "message": star.message, "created_at": star.created_at}
    return all(entity.get(k) == v for k, v in fields.items())


def _same_user(user: User, entity: Mapping[str, Any]) -> bool:
    return entity.get("created_at") == user.created_at


def _split(report: TableReport, chosen: Iterable[Converted[Any]], present: Mapping[str, Stored]) -> list[Any]:
    """Record skips and notes; the rows still to write (the others are there already)."""
    todo = []
    for item in chosen:
        if item.value is None:
            assert item.reason is not None
            report.skipped.append((item.partition, item.row, item.reason))
            continue
        report.notes.extend((item.partition, item.row, note) for note in item.notes)
        if item.value.id in present:
            report.already += 1
        else:
            todo.append(item)
    return todo


async def import_legacy(
    source: TableStore,
    target: TableStore,
    options: Options,
    *,
    same_store: bool,
    dry_run: bool = False,
    delete_source: bool = False,
) -> ImportReport:
    """Plan, then (unless ``dry_run``) write, ask running replicas to reload, and delete verified sources."""
    if not dry_run:
        await retry(lambda: target.ensure_tables(TABLES))
    partitions = await retry(lambda: star_partitions(target, record=not dry_run))
    run = _Run(source, target, options, same=same_store, partitions=partitions)
    stars, star_items, star_sources, stars_present = await run.plan_stars()
    users, user_items, user_sources, users_present = await run.plan_users()
    relations = await run.relations_report()
    report = ImportReport(dry_run, [stars, users, relations])
    star_todo = _split(stars, star_items, stars_present)
    user_todo = _split(users, user_items, users_present)
    if dry_run:
        stars.imported, users.imported = len(star_todo), len(user_todo)  # what it would import
        return report
    sources = {id(item): row for item, row in zip(user_items, user_sources, strict=True)}
    total = len(star_todo) + len(user_todo)
    with Progress("import-legacy", total, log=log) as run.progress:
        await run.write_stars(stars, [item.value for item in star_todo])
        await asyncio.gather(*(run.write_user(users, item, sources[id(item)]) for item in user_todo))
    await run.maybe_reload(force=True)
    if delete_source:
        with Progress("delete-source", stars.imported + stars.already + users.imported + users.already,
                      log=log) as run.progress:  # fmt: skip
            await run.delete_verified(stars, STARS, star_items, star_sources, _same_star)
            await run.delete_verified(users, USERS, user_items, user_sources, _same_user)
    return report
