"""Users, their unique e-mail claims and the user ↔ star relations in the table store.

- ``Users``: ``PartitionKey = bucket(id)``, ``RowKey = id``.
- ``Emails``: ``PartitionKey = bucket(key)``, ``RowKey = key`` where ``key`` is the
  normalised address (trimmed, lower-case, percent-encoded where Azure refuses a
  character): an insert-if-absent claim makes an address unique without a scan.
- ``UserStars``: ``PartitionKey = user_id``, ``RowKey = relation:star_id``: one
  partition lists a user's stars.
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from typing import Any, Final, Literal

import attrs

from .layout import LAYOUT, LAYOUT_PROPERTY, Census, RowKind, classify, read_row
from .stars import bucket
from .storage import EMAILS, USER_STARS, USERS

__all__ = (
    "EMAILS",
    "USERS",
    "USER_STARS",
    "Relation",
    "User",
    "claim_entity",
    "email_key",
    "is_relation",
    "relation_entity",
    "stored_user",
    "user_census",
    "user_from_entity",
    "user_to_entity",
)


Relation = Literal["placed", "liked"]
RELATIONS: Final = ("placed", "liked")


@attrs.frozen(slots=True)
class User:
    id: str
    name: str
    email: str
    created_at: float

    @property
    def email_key(self) -> str:
        return email_key(self.email)


def email_key(address: str) -> str:
    """The claim key of an address: trimmed, NFC, lower-case, safe as an Azure RowKey."""
    normal = unicodedata.normalize("NFC", address.strip()).lower()
    return urllib.parse.quote(normal, safe="@.+-_!$&'*=^`{|}~")


def user_to_entity(user: User) -> dict[str, Any]:
    return {
        "PartitionKey": bucket(user.id),
        "RowKey": user.id,
        "name": user.name,
        "email": user.email,
        "created_at": float(user.created_at),
        LAYOUT_PROPERTY: LAYOUT,
    }


def user_from_entity(entity: dict[str, Any]) -> User:
    return User(
        id=str(entity["RowKey"]),
        name=str(entity["name"]),
        email=str(entity["email"]),
        created_at=float(entity["created_at"]),
    )


def claim_entity(key: str, user_id: str, at: float) -> dict[str, Any]:
    return {
        "PartitionKey": bucket(key),
        "RowKey": key,
        "user_id": user_id,
        "claimed_at": at,
        LAYOUT_PROPERTY: LAYOUT,
    }


def relation_entity(user_id: str, relation: Relation, star_id: str, at: float) -> dict[str, Any]:
    return {
        "PartitionKey": user_id,
        "RowKey": f"{relation}:{star_id}",
        "star_id": star_id,
        "at": at,
        LAYOUT_PROPERTY: LAYOUT,
    }


def is_relation(entity: dict[str, Any]) -> bool:
    """Whether a ``UserStars`` row is one this service wrote (anything else there is left alone)."""
    relation, _, star_id = str(entity.get("RowKey", "")).partition(":")
    at = entity.get("at")
    return (
        classify(entity, partition=str(entity.get("PartitionKey")), required=("star_id",)) is RowKind.CURRENT
        and relation in RELATIONS
        and entity.get("star_id") == star_id
        and isinstance(at, int | float)
        and not isinstance(at, bool)
    )


USER_FIELDS: Final = ("name", "email", "created_at")


def user_census() -> Census[User]:
    """Reads ``Users`` rows at load: this service's become users, the others are counted."""
    return Census(USERS, partition=bucket, required=USER_FIELDS, parse=user_from_entity)


def stored_user(entity: dict[str, Any]) -> User | None:
    """A row read at a user's key, as a user; None unless this service wrote it and can read it."""
    partition = bucket(str(entity.get("RowKey", "")))
    return read_row(entity, partition=partition, required=USER_FIELDS, parse=user_from_entity)
