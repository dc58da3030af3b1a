"""Settings: one frozen attrs tree, built by a private cattrs converter.

Every value comes from an environment variable (named in the field's metadata),
optionally from ``ops/env/.env.{ENVIRONMENT}``; the process environment wins. Nothing
else in the code base reads ``os.environ``. A bad value raises ``SettingsError``
with one line that names the variable.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NewType

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.v import format_exception
from dotenv import dotenv_values

from .errors import SettingsError

__all__ = ("Environment", "LogFormat", "Settings", "describe_settings", "env_names", "load_settings")

ENV_FILE_TEMPLATE: Final = "ops/env/.env.{environment}"

Port = NewType("Port", int)
PositiveInt = NewType("PositiveInt", int)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeFloat = NewType("NonNegativeFloat", float)
Origins = NewType("Origins", tuple[str, ...])
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
    trust_forwarded_for: bool = env("API_TRUST_FORWARDED_FOR", False)
    max_body_bytes: PositiveInt = env("API_MAX_BODY_BYTES", 64 * 1024)
    shutdown_timeout: PositiveFloat = env("SHUTDOWN_TIMEOUT", 3.0)
    admin_api_key: str | None = env("ADMIN_API_KEY", None, secret=True)


@attrs.frozen
class LogSettings:
    level: LogLevel = env("LOG_LEVEL", "INFO")
    # None: JSON lines in production, text elsewhere.
    format: LogFormat | None = env("LOG_FORMAT", None)


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
    def version(self) -> str:
        from . import __version__

        return self.server.version or __version__

    def secrets(self) -> list[str]:
        """The configured secret values, for the log filter that redacts them."""
        found: list[str] = []
        for path, field in _env_fields(Settings):
            value = _get_path(self, path)
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


def _env_fields(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield (attribute path, field) for every environment-backed field of ``cls``."""
    for field in attrs.fields(cls):
        path = (*prefix, field.name)
        if "env" in field.metadata:
            yield path, field
        elif isinstance(field.type, type) and attrs.has(field.type):
            yield from _env_fields(field.type, path)


def _get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def _connection_string_secrets(value: str) -> list[str]:
    """The key parts of an Azure-style connection string (AccountKey=…;)."""
    parts = (p.partition("=") for p in value.split(";"))
    return [v for k, _, v in parts if k.lower() in {"accountkey", "sharedaccesssignature"} and v]


_ENV_BY_PATH: Final = {path: field.metadata["env"] for path, field in _env_fields(Settings)}
_SECRET_PATHS: Final = {path for path, field in _env_fields(Settings) if field.metadata["secret"]}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def _number(kind: type[int] | type[float], value: object, lowest: float, highest: float) -> Any:
    try:
        number = kind(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
    if not (math.isfinite(number) and lowest <= number <= highest):
        raise ValueError(f"expected a value from {lowest:g} to {highest:g}")
    return number


def _structure_origins(value: object, _: type) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"expected a JSON list of origins ({exc.msg})") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError("expected a JSON list of strings")
        else:
            items = text.split(",")
    return tuple(o.strip().rstrip("/") for o in items if o.strip())


def _structure_level(value: object, _: type) -> str:
    level = str(value).strip().upper()
    if not isinstance(logging.getLevelNamesMapping().get(level), int):
        raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def _structure_enum(value: object, cls: type[enum.StrEnum]) -> enum.StrEnum:
    try:
        return cls(str(value).strip().lower())
    except ValueError:
        raise ValueError(f"expected one of {', '.join(m.value for m in cls)}") from None


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(Port, lambda v, _: _number(int, v, 1, 65535))
    conv.register_structure_hook(PositiveInt, lambda v, _: _number(int, v, 1, 2**31 - 1))
    conv.register_structure_hook(PositiveFloat, lambda v, _: _number(float, v, 1e-9, 1e12))
    conv.register_structure_hook(NonNegativeFloat, lambda v, _: _number(float, v, 0, 1e12))
    conv.register_structure_hook(Origins, _structure_origins)
    conv.register_structure_hook(LogLevel, _structure_level)
    conv.register_structure_hook(Path, lambda v, _: Path(str(v)))
    for cls in (Environment, LogFormat):
        conv.register_structure_hook(cls, _structure_enum)
    return conv


_converter: Final = _make_converter()


def _raw(environ: Mapping[str, str]) -> dict[str, Any]:
    """The nested dict cattrs structures: only the variables that are set."""
    raw: dict[str, Any] = {}
    for path, name in _ENV_BY_PATH.items():
        value = environ.get(name, "")
        if value.strip() == "":  # `REDIS_PASSWORD=` means unset, as in most tools
            continue
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return raw


def _first_error(exc: BaseException, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], BaseException]:
    """The attribute path and the leaf exception of the first failure cattrs reports."""
    if isinstance(exc, ClassValidationError):
        for sub in exc.exceptions:
            notes = [n for n in getattr(sub, "__notes__", []) if isinstance(n, AttributeValidationNote)]
            return _first_error(sub, (*path, notes[0].name) if notes else path)
    return path, exc


def _describe(path: tuple[str, ...], exc: BaseException, raw: Mapping[str, Any]) -> str:
    name = _ENV_BY_PATH.get(path, ".".join(path))
    message = str(exc) if isinstance(exc, ValueError) else format_exception(exc, None)
    if path in _SECRET_PATHS:
        return f"{name}: {message}"
    value = _get_path_dict(raw, path)
    return f"{name}={value!r}: {message}" if value is not None else f"{name}: {message}"


def _get_path_dict(raw: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _check(settings: Settings) -> None:
    """Rules that span several variables."""
    if settings.is_production and settings.server.debug:
        raise SettingsError("DEBUG: not allowed in production (it shows internals in error answers)")
    if settings.is_production and "*" in settings.server.cors_origins:
        raise SettingsError("API_CORS_ORIGINS: '*' is refused in production; list the allowed origins")
    storage = settings.storage
    if storage.use_managed_identity and not storage.account_url:
        raise SettingsError(
            "AZURE_STORAGE_ACCOUNT_URL: required when AZURE_STORAGE_USE_MANAGED_IDENTITY=true"
        )
    if storage.table_prefix and not storage.table_prefix.isalnum():
        raise SettingsError("STORAGE_TABLE_PREFIX: letters and digits only (Azure table names)")


def env_names() -> frozenset[str]:
    """Every environment variable the settings read."""
    return frozenset(_ENV_BY_PATH.values())


def _env_file(environ: Mapping[str, str], root: Path | None) -> tuple[Path | None, dict[str, str]]:
    """The env file of ``environ``'s ``ENVIRONMENT`` (None if there is none) and its values."""
    environment = environ.get("ENVIRONMENT", "").strip().lower() or Environment.DEVELOPMENT.value
    if environment in set(Environment):
        env_file = (root or Path.cwd()) / ENV_FILE_TEMPLATE.format(environment=environment)
        if env_file.is_file():
            return env_file, {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    return None, {}


def describe_settings(
    settings: Settings, environ: Mapping[str, str], *, root: Path | None = None
) -> list[tuple[str, str, str]]:
    """Every variable as (name, effective value, where it came from); secret values redacted."""
    env_file, from_file = _env_file(environ, root)
    rows = []
    for path, field in _env_fields(Settings):
        name = field.metadata["env"]
        value = _get_path(settings, path)
        if field.metadata["secret"]:
            shown = "<redacted>" if value else "(unset)"
        elif value is None:
            shown = "(unset)"
        elif isinstance(value, tuple):
            shown = ",".join(str(v) for v in value) or "(none)"
        else:
            shown = str(value.value if isinstance(value, enum.Enum) else value)
        if environ.get(name, "").strip():
            source = "environment"
        elif from_file.get(name, "").strip() and env_file is not None:
            source = str(env_file)
        else:
            source = "default"
        rows.append((name, shown, source))
    return rows


def load_settings(environ: Mapping[str, str], *, root: Path | None = None) -> Settings:
    """Build the settings from ``environ`` and the env file of its ``ENVIRONMENT``.

    ``root`` is where ``ops/env/`` is looked for (default: the working directory).
    """
    merged = {**_env_file(environ, root)[1], **environ}
    raw = _raw(merged)
    try:
        settings = _converter.structure(raw, Settings)
    except ClassValidationError as exc:
        path, leaf = _first_error(exc)
        raise SettingsError(_describe(path, leaf, raw)) from exc
    _check(settings)
    return settings
