"""Table storage: one protocol, an Azure Tables backend and an embedded SQLite one."""

from __future__ import annotations

from typing import Final

from ..settings import Settings
from .base import (
    MAX_BATCH,
    Entity,
    Op,
    Page,
    RowRange,
    Stored,
    TableStore,
    delete_rows,
    iter_entities,
    iter_pages,
    partition_chunks,
)

__all__ = (
    "CONTROL_TABLE",
    "DATA_TABLES",
    "EMAILS",
    "MAX_BATCH",
    "STARS",
    "TABLES",
    "USERS",
    "USER_STARS",
    "Entity",
    "Op",
    "Page",
    "RowRange",
    "Stored",
    "TableStore",
    "delete_rows",
    "describe_store",
    "iter_entities",
    "iter_pages",
    "open_store",
    "partition_chunks",
)

# Every table name, defined here only.
STARS: Final = "Stars"
USERS: Final = "Users"
EMAILS: Final = "Emails"  # unique address claims
USER_STARS: Final = "UserStars"  # the user ↔ star relations
# The tables that hold the data (what `starmap export` writes out).
DATA_TABLES: Final = (STARS, USERS, EMAILS, USER_STARS)
# Where tools leave word for running replicas (see starmap.control).
CONTROL_TABLE: Final = "StarmapControl"
# Every table the service uses; created at start-up when missing.
TABLES: Final = (*DATA_TABLES, CONTROL_TABLE)


def open_store(settings: Settings) -> TableStore:
    """The store the settings ask for: Azure when configured, else SQLite under DATA_DIR."""
    storage = settings.storage
    common = {"table_prefix": storage.table_prefix}
    if storage.uses_azure:
        from .azure import AzureTableStore

        tuning = {
            "max_concurrency": storage.max_concurrency,
            "timeout": storage.timeout,
            "write_interval": storage.partition_write_interval,
        }
        if storage.connection_string:
            return AzureTableStore.from_connection_string(storage.connection_string, **common, **tuning)
        assert storage.account_url is not None  # settings refuse managed identity without it
        return AzureTableStore.from_managed_identity(storage.account_url, **common, **tuning)
    from .sqlite import SqliteStore

    return SqliteStore(data_dir=settings.server.data_dir, **common)


def describe_store(settings: Settings) -> str:
    """Where the data lives, without secrets: fit for logs and debug pages."""
    storage = settings.storage
    if storage.connection_string:
        endpoint = next(
            (
                p.partition("=")[2]
                for p in storage.connection_string.split(";")
                if p.startswith("TableEndpoint=")
            ),
            "account from connection string",
        )
        return f"azure tables ({endpoint})"
    if storage.use_managed_identity:
        return f"azure tables ({storage.account_url}, managed identity)"
    return f"sqlite ({settings.server.data_dir.resolve()})"
