"""The project's own exceptions.

Each one subclasses the builtin that fits, so code that knows nothing of Star Map
still catches it sensibly; the HTTP layer maps them to problem+json answers.
"""

from __future__ import annotations

__all__ = (
    "ActorStopped",
    "AlreadyExists",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "NotFound",
    "Overloaded",
    "PreconditionFailed",
    "SettingsError",
    "StarmapError",
    "StorageUnavailable",
    "ValidationFailed",
)


class StarmapError(Exception):
    """Base class of every error Star Map raises on purpose."""


class NotFound(StarmapError, LookupError):
    """The entity asked for does not exist."""


class AlreadyExists(StarmapError, ValueError):
    """An insert met an entity (or a unique claim) that is already there."""


class IdempotencyKeyReused(StarmapError, ValueError):
    """An Idempotency-Key sent again with a different request."""


class IdempotencyKeyInFlight(StarmapError, RuntimeError):
    """An Idempotency-Key sent again while its first request is still being answered."""


class PreconditionFailed(StarmapError, ValueError):
    """A conditional write lost: the entity changed since its ETag was read."""


class StorageUnavailable(StarmapError, ConnectionError):
    """The table store cannot be reached or did not answer in time."""


class Overloaded(StarmapError, RuntimeError):
    """Too much work is queued already; the caller should retry later."""


class ActorStopped(StarmapError, RuntimeError):
    """The actor stopped (passivated, or the service is shutting down) before it handled the message."""


class ValidationFailed(StarmapError, ValueError):
    """Input that is well-formed but breaks the rules of a field.

    ``errors`` maps each offending field to a human-readable message.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class SettingsError(StarmapError, ValueError):
    """A configuration value is missing, malformed or inconsistent.

    The message is one line that names the variable, fit to print on start-up.
    """
