"""Settings: defaults, parsing, the env file, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from starmap.errors import SettingsError
from starmap.logs import RedactSecrets
from starmap.settings import Environment, LogFormat, load_settings


def test_defaults_need_nothing_set(tmp_path: Path) -> None:
    settings = load_settings({}, root=tmp_path)
    assert settings.server.environment is Environment.DEVELOPMENT
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 8080)
    assert settings.server.data_dir == Path("var")
    assert not settings.storage.uses_azure
    assert settings.redis.host is None
    assert (settings.rate_limit.times, settings.rate_limit.seconds) == (5, 60.0)
    assert (settings.redis.popularity_threshold, settings.redis.popularity_window) == (50, 3600)
    assert (
        settings.stars.min_brightness,
        settings.stars.brightness_half_life,
        settings.stars.like_boost,
    ) == (
        20.0,
        3600.0,
        20.0,
    )
    assert (settings.sse.ping_interval, settings.sse.retry_ms, settings.sse.subscriber_queue) == (
        15.0,
        3000,
        1000,
    )
    assert settings.server.max_body_bytes == 64 * 1024
    assert settings.log_format is LogFormat.TEXT


def test_values_are_parsed(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "PORT": " 9000 ",
            "DEBUG": "no",  # DEBUG=true is refused in production
            "API_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::1",
            "API_CORS_ORIGINS": '["https://a.example", "https://b.example/"]',
            "STAR_LIKE_BOOST": "12.5",
            "ENVIRONMENT": "Production",
            "REDIS_PASSWORD": "",
        },
        root=tmp_path,
    )
    assert settings.server.port == 9000
    assert not settings.server.debug
    assert [str(n) for n in settings.server.trusted_proxies] == ["10.0.0.0/8", "2001:db8::1/128"]
    assert settings.server.cors_origins == ("https://a.example", "https://b.example")
    assert settings.stars.like_boost == 12.5
    assert settings.is_production and settings.log_format is LogFormat.JSON
    assert settings.redis.password is None


def test_cors_origins_accept_a_comma_separated_list(tmp_path: Path) -> None:
    settings = load_settings({"API_CORS_ORIGINS": "http://a, http://b"}, root=tmp_path)
    assert settings.server.cors_origins == ("http://a", "http://b")


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"PORT": "notaport"}, "PORT='notaport': expected an integer"),
        ({"PORT": "70000"}, "PORT='70000': expected a value from 1 to 65535"),
        (
            {"ENVIRONMENT": "prod"},
            "ENVIRONMENT='prod': expected one of development, staging, production, test",
        ),
        (
            {"AZURE_STORAGE_USE_MANAGED_IDENTITY": "true"},
            "AZURE_STORAGE_ACCOUNT_URL: required when AZURE_STORAGE_USE_MANAGED_IDENTITY=true",
        ),
        (
            {"ENVIRONMENT": "production", "API_CORS_ORIGINS": "*"},
            "API_CORS_ORIGINS: '*' is refused in production",
        ),
        ({"DEBUG": "maybe"}, "DEBUG='maybe': expected true or false"),
        (
            {"API_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"},
            "API_TRUSTED_PROXIES='10.0.0.0/8,nonsense': 'nonsense' is not",
        ),
        (
            {"API_TRUST_FORWARDED_FOR": "true"},
            "API_TRUST_FORWARDED_FOR: no longer read; set API_TRUSTED_PROXIES",
        ),
        ({"ENVIRONMENT": "production", "DEBUG": "true"}, "DEBUG: not allowed in production"),
        (
            {"ENVIRONMENT": "production", "ADMIN_API_KEY": "short"},
            "ADMIN_API_KEY: at least 32 characters in production",
        ),
        ({"STAR_BRIGHTNESS_HALF_LIFE": "nan"}, "STAR_BRIGHTNESS_HALF_LIFE='nan': expected a value"),
        ({"API_RATE_LIMIT_TIMES": "0"}, "API_RATE_LIMIT_TIMES='0': expected a value from 1"),
        ({"API_CORS_ORIGINS": "[1, 2]"}, "API_CORS_ORIGINS='[1, 2]': expected a JSON list of strings"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': expected one of DEBUG"),
        ({"STORAGE_TABLE_PREFIX": "bad-prefix"}, "STORAGE_TABLE_PREFIX: letters and digits only"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_a_bad_value_is_one_line_naming_the_variable(
    tmp_path: Path, environ: dict[str, str], line: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ, root=tmp_path)
    assert str(caught.value).startswith(line)
    assert "\n" not in str(caught.value)


def test_a_bad_secret_is_named_but_not_echoed(tmp_path: Path) -> None:
    # REDIS_PASSWORD takes any string, so provoke the rule on a secret-bearing neighbour instead.
    with pytest.raises(SettingsError) as caught:
        load_settings({"REDIS_PASSWORD": "hunter2", "REDIS_PORT": "x"}, root=tmp_path)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(load_settings({"REDIS_PASSWORD": "hunter2"}, root=tmp_path))


def test_the_env_file_of_the_environment_is_read_and_the_process_wins(tmp_path: Path) -> None:
    env_dir = tmp_path / "ops" / "env"
    env_dir.mkdir(parents=True)
    (env_dir / ".env.staging").write_text('# staging\nPORT=9100\nPROJECT_NAME="Sky from file"\n')
    settings = load_settings({"ENVIRONMENT": "staging", "PORT": "9200"}, root=tmp_path)
    assert settings.server.port == 9200
    assert settings.server.project_name == "Sky from file"
    assert load_settings({"ENVIRONMENT": "test"}, root=tmp_path).server.port == 8080


def test_shipped_env_files_never_point_at_services() -> None:
    root = Path(__file__).resolve().parent.parent
    for environment in Environment:
        settings = load_settings({"ENVIRONMENT": environment.value}, root=root)
        assert not settings.storage.uses_azure, environment
        assert settings.redis.host is None, environment


def test_secrets_are_redacted_from_log_records(tmp_path: Path) -> None:
    import logging

    conn = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0a2V5;TableEndpoint=http://x;"
    settings = load_settings(
        {"AZURE_STORAGE_CONNECTION_STRING": conn, "ADMIN_API_KEY": "admin-key-1", "REDIS_PASSWORD": "pw-123"},
        root=tmp_path,
    )
    redact = RedactSecrets(settings.secrets())
    record = logging.LogRecord("t", logging.INFO, "", 0, "conn %s key %s pw %s part %s", None, None)
    record.args = (conn, "admin-key-1", "pw-123", "AccountKey=c2VjcmV0a2V5")
    redact.filter(record)
    text = record.getMessage()
    for secret in (conn, "admin-key-1", "pw-123", "c2VjcmV0a2V5"):
        assert secret not in text
    assert text.count("***") == 4


def test_every_setting_is_in_the_readme_table() -> None:
    """The README's configuration table is the operators' reference: nothing read is missing."""
    import re

    from starmap.settings import env_names

    from .rig import ROOT

    readme = (ROOT / "README.md").read_text()
    table = readme[
        readme.index("| variable | default | meaning |") : readme.index("Secret values never appear")
    ]
    assert env_names() <= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
