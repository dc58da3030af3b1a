"""The settings tree: one frozen attrs class per section, each field named after its variable.

``starmap.settings.loading`` builds it from the environment; nothing else reads
``os.environ``. Defaults live here and only here.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, NewType

import attrs

__all__ = (
    "ActorSettings",
    "Environment",
    "Fraction",
    "LogFormat",
    "LogSettings",
    "Networks",
    "NonNegativeFloat",
    "Origins",
    "Port",
    "PositiveFloat",
    "PositiveInt",
    "RateLimitSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "SseSettings",
    "StarSettings",
    "StorageSettings",
    "env_fields",
    "get_path",
)

Port = NewType("Port", int)
PositiveInt = NewType("PositiveInt", int)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeFloat = NewType("NonNegativeFloat", float)
Fraction = NewType("Fraction", float)  # from 0 to 1
# A JSON access line for every read was a fifth of a read's cost (ops/bench, get one star).
PRODUCTION_ACCESS_SAMPLE: Final = 0.1
Origins = NewType("Origins", tuple[str, ...])
Networks = NewType("Networks", tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...])
LogLevel = NewType("LogLevel", str)


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    TEST = "test"


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


def env(name: str, default: Any, *, secret: bool = False) -> Any:
    """An attrs field read from the environment variable ``name``.

    Secret fields stay out of ``repr`` and their values out of error messages.
    """
    return attrs.field(default=default, repr=not secret, metadata={"env": name, "secret": secret})


@attrs.frozen
class ServerSettings:
    environment: Environment = env("ENVIRONMENT", Environment.DEVELOPMENT)
    host: str = env("HOST", "0.0.0.0")  # noqa: S104 - a container listens on all interfaces
    port: Port = env("PORT", 8080)
    debug: bool = env("DEBUG", False)
    project_name: str = env("PROJECT_NAME", "Star Map")
    version: str | None = env("VERSION", None)
    data_dir: Path = env("DATA_DIR", Path("var"))
    cors_origins: Origins = env("API_CORS_ORIGINS", ())
    # Proxies whose X-Forwarded-For is believed (CIDRs); none: the peer is the client.
    trusted_proxies: Networks = env("API_TRUSTED_PROXIES", ())
    max_body_bytes: PositiveInt = env("API_MAX_BODY_BYTES", 64 * 1024)
    # A request body that has not arrived whole by then is answered 408 and its connection closed.
    body_timeout: PositiveFloat = env("API_BODY_TIMEOUT", 10.0)
    # How long a write's Idempotency-Key is remembered: a retry within it replays the answer.
    idempotency_ttl: PositiveFloat = env("API_IDEMPOTENCY_TTL", 86400.0)
    shutdown_timeout: PositiveFloat = env("SHUTDOWN_TIMEOUT", 3.0)
    admin_api_key: str | None = env("ADMIN_API_KEY", None, secret=True)


@attrs.frozen
class LogSettings:
    level: LogLevel = env("LOG_LEVEL", "INFO")
    # None: JSON lines in production, text elsewhere.
    format: LogFormat | None = env("LOG_FORMAT", None)
    # The share of successful, quick reads that get an access line (None: 0.1 in production,
    # all elsewhere). Writes, errors and reads of a second or more always get theirs.
    access_sample: Fraction | None = env("LOG_ACCESS_SAMPLE", None)


@attrs.frozen
class StorageSettings:
    connection_string: str | None = env("AZURE_STORAGE_CONNECTION_STRING", None, secret=True)
    account_url: str | None = env("AZURE_STORAGE_ACCOUNT_URL", None)
    use_managed_identity: bool = env("AZURE_STORAGE_USE_MANAGED_IDENTITY", False)
    # Lets several deployments (or tests) share one account without sharing tables.
    table_prefix: str = env("STORAGE_TABLE_PREFIX", "")
    # Azurite resets connections past ~300 requests in flight; Azure throttles too.
    max_concurrency: PositiveInt = env("STORAGE_MAX_CONCURRENCY", 32)
    timeout: PositiveFloat = env("STORAGE_TIMEOUT", 10.0)
    # Azure: a partition's writes go out at most once per this many seconds, and what arrives
    # meanwhile shares one transaction (an idle partition's write goes at once; 0: never held).
    partition_write_interval: NonNegativeFloat = env("STORAGE_PARTITION_WRITE_INTERVAL", 0.1)
    # How often a replica looks for a reload asked by `starmap import-legacy` or `import`.
    reload_poll: PositiveFloat = env("STORAGE_RELOAD_POLL_SECONDS", 5.0)

    @property
    def uses_azure(self) -> bool:
        return bool(self.connection_string) or self.use_managed_identity


@attrs.frozen
class RedisSettings:
    host: str | None = env("REDIS_HOST", None)
    port: Port = env("REDIS_PORT", 6379)
    password: str | None = env("REDIS_PASSWORD", None, secret=True)
    ssl: bool = env("REDIS_SSL", False)
    cache_ttl: PositiveInt = env("REDIS_CACHE_TTL", 300)
    popularity_threshold: PositiveInt = env("REDIS_POPULARITY_THRESHOLD", 50)
    popularity_window: PositiveInt = env("REDIS_POPULARITY_WINDOW", 3600)
    # Every key starts with it: deployments (or tests) can share one Redis.
    key_prefix: str = env("REDIS_KEY_PREFIX", "starmap:")


@attrs.frozen
class RateLimitSettings:
    times: PositiveInt = env("API_RATE_LIMIT_TIMES", 5)
    seconds: PositiveFloat = env("API_RATE_LIMIT_SECONDS", 60.0)


@attrs.frozen
class StarSettings:
    brightness_half_life: PositiveFloat = env("STAR_BRIGHTNESS_HALF_LIFE", 3600.0)
    like_boost: NonNegativeFloat = env("STAR_LIKE_BOOST", 20.0)
    min_brightness: NonNegativeFloat = env("STAR_MIN_BRIGHTNESS", 20.0)


@attrs.frozen
class SseSettings:
    ping_interval: PositiveFloat = env("SSE_PING_INTERVAL", 15.0)
    retry_ms: PositiveInt = env("SSE_RETRY_MS", 3000)
    subscriber_queue: PositiveInt = env("SSE_SUBSCRIBER_QUEUE", 1000)
    replay_buffer: PositiveInt = env("SSE_REPLAY_BUFFER", 10_000)
    # Over this many open streams a new one gets a `retry:` hint and is closed.
    max_streams: PositiveInt = env("SSE_MAX_STREAMS", 20_000)
    # One client (an address, behind the trusted proxies) may hold this many at most.
    max_streams_per_client: PositiveInt = env("SSE_MAX_STREAMS_PER_CLIENT", 100)
    # A write to a stream that takes longer than this aborts the connection.
    send_timeout: PositiveFloat = env("SSE_SEND_TIMEOUT", 30.0)
    # Events published within this many ms reach each stream in one write.
    flush_ms: PositiveFloat = env("SSE_FLUSH_MS", 30.0)


@attrs.frozen
class ActorSettings:
    mailbox_size: PositiveInt = env("ACTOR_MAILBOX_SIZE", 1000)
    # Like counters idle this long are passivated: memory follows the active set.
    idle_seconds: PositiveFloat = env("ACTOR_IDLE_SECONDS", 60.0)
    ask_timeout: PositiveFloat = env("ACTOR_ASK_TIMEOUT", 10.0)
    # How long a like batch keeps retrying an unreachable store before answering 503.
    like_write_deadline: PositiveFloat = env("LIKE_WRITE_DEADLINE", 5.0)
    # Distinct clients the local rate limiter remembers at most.
    rate_limit_clients: PositiveInt = env("RATE_LIMIT_MAX_CLIENTS", 100_000)


@attrs.frozen
class Settings:
    """The whole configuration of one Star Map process."""

    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    storage: StorageSettings = StorageSettings()
    redis: RedisSettings = RedisSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    stars: StarSettings = StarSettings()
    sse: SseSettings = SseSettings()
    actors: ActorSettings = ActorSettings()

    @property
    def is_production(self) -> bool:
        return self.server.environment is Environment.PRODUCTION

    @property
    def log_format(self) -> LogFormat:
        if self.log.format is not None:
            return self.log.format
        return LogFormat.JSON if self.is_production else LogFormat.TEXT

    @property
    def access_sample(self) -> float:
        if self.log.access_sample is not None:
            return self.log.access_sample
        return PRODUCTION_ACCESS_SAMPLE if self.is_production else 1.0

    @property
    def version(self) -> str:
        from .. import __version__

        return self.server.version or __version__

    def secrets(self) -> list[str]:
        """The configured secret values, for the log filter that redacts them."""
        found: list[str] = []
        for path, field in env_fields(Settings):
            value = get_path(self, path)
            if field.metadata["secret"] and value:
                found.append(str(value))
                found.extend(_connection_string_secrets(str(value)))
        return found


_SECTIONS: Final = (
    ServerSettings,
    LogSettings,
    StorageSettings,
    RedisSettings,
    RateLimitSettings,
    StarSettings,
    SseSettings,
    ActorSettings,
    Settings,
)
for _cls in _SECTIONS:
    attrs.resolve_types(_cls)


def env_fields(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield (attribute path, field) for every environment-backed field of ``cls``."""
    for field in attrs.fields(cls):
        path = (*prefix, field.name)
        if "env" in field.metadata:
            yield path, field
        elif isinstance(field.type, type) and attrs.has(field.type):
            yield from env_fields(field.type, path)


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _connection_string_secrets(value: str) -> list[str]:
    """The key parts of an Azure-style connection string (AccountKey=…;)."""
    parts = (p.partition("=") for p in value.split(";"))
    return [v for k, _, v in parts if k.lower() in {"accountkey", "sharedaccesssignature"} and v]
