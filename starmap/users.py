"""Where users and the user ↔ star relations live in the table store."""

from __future__ import annotations

from typing import Any, Final, Literal

from .errors import NotFound
from .stars import bucket
from .storage import TableStore

__all__ = ("USERS", "USER_STARS", "Relation", "relation_entity", "require_user")

USERS: Final = "Users"
USER_STARS: Final = "UserStars"

Relation = Literal["placed", "liked"]


def relation_entity(user_id: str, relation: Relation, star_id: str, at: float) -> dict[str, Any]:
    """``PartitionKey = user_id``, ``RowKey = relation:star_id``: one partition lists a user's stars."""
    return {"PartitionKey": user_id, "RowKey": f"{relation}:{star_id}", "star_id": star_id, "at": at}


async def require_user(store: TableStore, user_id: str) -> None:
    """A point read: ``NotFound`` naming the user when there is none."""
    try:
        await store.get(USERS, bucket(user_id), user_id)
    except NotFound:
        raise NotFound(f"no user {user_id!r}") from None
