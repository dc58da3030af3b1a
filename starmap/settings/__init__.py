"""Settings: one frozen attrs tree (``tree``), built from the environment by a private cattrs
converter (``loading``). Every value comes from an environment variable (named in the
field's metadata), optionally from ``ops/env/.env.{ENVIRONMENT}``; the process
environment wins. Nothing else in the code base reads ``os.environ``.
"""

from __future__ import annotations

from .loading import describe_settings, env_names, load_settings
from .tree import (
    ActorSettings,
    Environment,
    LogFormat,
    LogSettings,
    PositiveInt,
    RateLimitSettings,
    RedisSettings,
    ServerSettings,
    Settings,
    SseSettings,
    StarSettings,
    StorageSettings,
)

__all__ = (
    "ActorSettings",
    "Environment",
    "LogFormat",
    "LogSettings",
    "PositiveInt",
    "RateLimitSettings",
    "RedisSettings",
    "ServerSettings",
    "Settings",
    "SseSettings",
    "StarSettings",
    "StorageSettings",
    "describe_settings",
    "env_names",
    "load_settings",
)
