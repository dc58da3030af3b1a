"""Loading the settings: the environment (and the env file of its ``ENVIRONMENT``) through
a private cattrs converter. A bad value raises ``SettingsError`` with one line that
names the variable; secret values never appear in it.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError
from cattrs.v import format_exception
from dotenv import dotenv_values

from ..errors import SettingsError
from .tree import (
    Environment,
    Fraction,
    LogFormat,
    LogLevel,
    Networks,
    NonNegativeFloat,
    Origins,
    Port,
    PositiveFloat,
    PositiveInt,
    Settings,
    env_fields,
    get_path,
)

__all__ = ("describe_settings", "env_names", "load_settings")

ENV_FILE_TEMPLATE: Final = "ops/env/.env.{environment}"
MIN_ADMIN_KEY: Final = 32  # characters of ADMIN_API_KEY in production at least

_ENV_BY_PATH: Final = {path: field.metadata["env"] for path, field in env_fields(Settings)}
_SECRET_PATHS: Final = {path for path, field in env_fields(Settings) if field.metadata["secret"]}
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


def _structure_networks(value: object, _: type) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated (or a JSON list of) addresses and CIDRs: ``10.0.0.0/8,::1``."""
    text = value if isinstance(value, str) else ",".join(map(str, value))  # type: ignore[call-overload]
    items = json.loads(text) if text.strip().startswith("[") else text.split(",")
    networks = []
    for item in items:
        if str(item).strip():
            try:
                networks.append(ipaddress.ip_network(str(item).strip(), strict=False))
            except ValueError:
                raise ValueError(
                    f"{str(item).strip()!r} is not an address or a CIDR like 10.0.0.0/8"
                ) from None
    return tuple(networks)


# Settings that were renamed: a deployment that still sets one learns it at start-up.
_REPLACED: Final = {
    "API_TRUST_FORWARDED_FOR": "API_TRUSTED_PROXIES (the proxies' addresses or CIDRs; "
    "X-Forwarded-For is now believed from those only, right-most untrusted hop first)",
}


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
    conv.register_structure_hook(Fraction, lambda v, _: _number(float, v, 0, 1))
    conv.register_structure_hook(Origins, _structure_origins)
    conv.register_structure_hook(Networks, _structure_networks)
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
    key = settings.server.admin_api_key
    if settings.is_production and key is not None and len(key) < MIN_ADMIN_KEY:
        raise SettingsError(
            f"ADMIN_API_KEY: at least {MIN_ADMIN_KEY} characters in production (openssl rand -hex 24)"
        )
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
    for path, field in env_fields(Settings):
        name = field.metadata["env"]
        value = get_path(settings, path)
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
    for old, new in _REPLACED.items():
        if merged.get(old, "").strip():
            raise SettingsError(f"{old}: no longer read; set {new}")
    raw = _raw(merged)
    try:
        settings = _converter.structure(raw, Settings)
    except ClassValidationError as exc:
        path, leaf = _first_error(exc)
        raise SettingsError(_describe(path, leaf, raw)) from exc
    _check(settings)
    return settings
