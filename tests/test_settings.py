"""alliance/settings.py loaded in fresh processes: the embedded default (make run's own
PostgreSQL and Valkey), production's refusals, strict parsing, and the production shape
(Redis, MinIO, whitenoise).

Each case starts from this process's environment with every variable the settings read
removed, so what the test sets is all the settings see.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .test_deploy import settings_env_names

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Loads the settings as every process of the hub does, and prints what they chose.
PROBE = r"""
import json
import django
django.setup()
from django.conf import settings
from django.core.files.storage import storages

storage = storages["default"]
database = settings.DATABASES["default"]
facts = {
    "HUB_ENV": settings.HUB_ENV,
    "DEBUG": settings.DEBUG,
    "DATA_DIR": str(settings.DATA_DIR),
    "database_engine": database["ENGINE"],
    "database_name": str(database["NAME"]),
    "database_address": f"{database['USER']}@{database['HOST']}:{database['PORT']}",
    "database_password": database["PASSWORD"],
    "database_options": database.get("OPTIONS", {}),
    "databases": sorted(settings.DATABASES),
    "broker": settings.CELERY_BROKER_URL,
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "channel_layer_hosts": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "channels_lite_installed": "channels_lite" in settings.INSTALLED_APPS,
    "storage": f"{type(storage).__module__}.{type(storage).__qualname__}",
    "storage_location": str(getattr(storage, "location", "")),
    "storage_bucket": getattr(storage, "bucket_name", None),
    "storage_endpoint": getattr(storage, "endpoint_url", None),
    "storage_querystring_auth": getattr(storage, "querystring_auth", None),
    "storage_file_overwrite": getattr(storage, "file_overwrite", None),
    "staticfiles": settings.STORAGES["staticfiles"]["BACKEND"],
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
    "proxy_ssl_header": settings.SECURE_PROXY_SSL_HEADER,
}
print(json.dumps(facts, default=str))
"""


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any variable the settings read, plus `values`."""
    read = settings_env_names() | {"HUB_ENV", "DJANGO_SETTINGS_MODULE"}
    environment = {name: value for name, value in os.environ.items() if name not in read}
    return environment | {"DJANGO_SETTINGS_MODULE": "alliance.settings"} | values


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """A complete, valid production environment; an override of None removes a variable."""
    environment = clean_env(
        HUB_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(50),
        PATIENT_KEY_SECRET=secrets.token_hex(32),
        ALLOWED_HOSTS="hub.example.org",
        DATABASE_URL="postgres://hub_app:not-a-real-password@127.0.0.1:5432/hub",
        REDIS_URL="redis://127.0.0.1:6379/13",
        HUB_DATA_DIR=str(tmp_path / "data"),
    )
    for name, value in overrides.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def run(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )


def probe(environment: dict[str, str], *flags: str) -> dict[str, Any]:
    result = run(environment, "-c", PROBE, *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- The embedded default -----------------------------------------------------------------


def test_no_environment_at_all_is_the_embedded_default(tmp_path):
    # What `make run` starts (alliance/embedded.py), at its default ports when it never ran:
    # the production code paths, with no SQLite, file broker or SQLite channel layer left.
    facts = probe(clean_env(HUB_DATA_DIR=str(tmp_path)))
    assert facts["HUB_ENV"] == "development"
    assert facts["DEBUG"] is True
    assert facts["DATA_DIR"] == str(tmp_path)
    assert facts["database_engine"] == "django.db.backends.postgresql"
    assert facts["database_address"] == "hub_app@127.0.0.1:25432"
    assert facts["database_name"] == "hub"
    assert facts["databases"] == ["default"]
    assert facts["broker"] == "redis://127.0.0.1:26379/0"
    assert facts["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert facts["channels_lite_installed"] is False
    assert facts["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert facts["storage"] == "django.core.files.storage.filesystem.FileSystemStorage"
    assert facts["storage_location"] == str(tmp_path / "media")
    assert facts["ssl_redirect"] is False


def test_the_embedded_default_follows_the_servers_make_run_started(tmp_path):
    # The launcher keeps its ports and passwords in the data folder; settings read them.
    (tmp_path / "embedded.json").write_text(
        json.dumps(
            {
                "postgres": {
                    "port": 40001,
                    "superuser_password": "s",
                    "owner_password": "o",
                    "app_password": "app-secret",
                },
                "valkey": {"port": 40002, "password": "valkey-secret"},
            }
        )
    )
    facts = probe(clean_env(HUB_DATA_DIR=str(tmp_path)))
    assert facts["database_address"] == "hub_app@127.0.0.1:40001"
    assert facts["database_password"] == "app-secret"
    assert facts["broker"] == "redis://:valkey-secret@127.0.0.1:40002/0"
    assert facts["channel_layer_hosts"][0]["address"] == facts["broker"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["embedded.json", "static"]


def test_named_servers_win_over_the_embedded_ones(tmp_path):
    facts = probe(
        clean_env(
            HUB_DATA_DIR=str(tmp_path),
            DATABASE_URL="postgres://me@db.example.org:5432/hub",
            REDIS_URL="redis://cache.example.org:6379/3",
        )
    )
    assert facts["database_address"] == "me@db.example.org:5432"
    assert facts["broker"] == "redis://cache.example.org:6379/3"


# --- Production refuses an unsafe start ------------------------------------------------------

GUARD_MESSAGES = {
    "debug": "DEBUG must be off",
    "secret": "SECRET_KEY must be set to a random value of at least 50 characters",
    "hosts": "ALLOWED_HOSTS must name the hosts the hub answers to",
    "any-host": "ALLOWED_HOSTS must name the hosts, not *",
    "database": "DATABASE_URL must point at PostgreSQL",
    "redis": "REDIS_URL must be set",
    "patient": "PATIENT_KEY_SECRET must be set to a random value of 32+ characters",
}


def test_a_complete_production_environment_loads(tmp_path):
    facts = probe(production_env(tmp_path))
    assert facts["HUB_ENV"] == "production"
    assert facts["DEBUG"] is False


@pytest.mark.parametrize(
    ("problem", "overrides"),
    [
        ("debug", {"DEBUG": "true"}),
        ("secret", {"SECRET_KEY": None}),  # the embedded default's key
        ("secret", {"SECRET_KEY": "too-short-to-be-a-signing-key"}),
        ("secret", {"SECRET_KEY": "ab" * 40}),  # long, but hardly random
        ("hosts", {"ALLOWED_HOSTS": None}),
        ("any-host", {"ALLOWED_HOSTS": "*"}),
        ("any-host", {"ALLOWED_HOSTS": "hub.example.org,*"}),
        ("database", {"DATABASE_URL": "sqlite:////var/lib/hub/hub.sqlite3"}),
        ("database", {"DATABASE_URL": None}),
        ("redis", {"REDIS_URL": None}),
        ("patient", {"PATIENT_KEY_SECRET": "too-short"}),
        ("patient", {"PATIENT_KEY_SECRET": None}),
    ],
    ids=[
        "debug-on",
        "default-secret-key",
        "short-secret-key",
        "repetitive-secret-key",
        "no-allowed-hosts",
        "any-host",
        "any-host-among-others",
        "sqlite-database",
        "no-database",
        "no-redis",
        "short-patient-key",
        "no-patient-key",
    ],
)
def test_production_refuses_an_unsafe_setting(tmp_path, problem, overrides):
    result = run(production_env(tmp_path, **overrides), "-c", "import django; django.setup()")
    assert result.returncode != 0
    assert (
        "django.core.exceptions.ImproperlyConfigured: HUB_ENV=production refuses to start"
        in result.stderr
    )
    assert GUARD_MESSAGES[problem] in result.stderr
    others = [message for key, message in GUARD_MESSAGES.items() if key != problem]
    assert not [message for message in others if message in result.stderr]


def test_production_names_every_problem_at_once(tmp_path):
    result = run(
        clean_env(HUB_ENV="production", DEBUG="true", HUB_DATA_DIR=str(tmp_path)),
        "-c",
        "import django; django.setup()",
    )
    assert result.returncode != 0
    for problem, message in GUARD_MESSAGES.items():
        if problem != "any-host":  # no hosts at all: the "not *" refusal cannot apply too
            assert message in result.stderr


def test_manage_py_refuses_too(tmp_path):
    result = run(production_env(tmp_path, REDIS_URL=None), "manage.py", "check")
    assert result.returncode != 0
    assert GUARD_MESSAGES["redis"] in result.stderr


# --- Strict parsing: a bad value is an error, never a silent default -------------------------


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("DEBUG", "maybe", "Not a valid boolean"),
        ("HUB_ENV", "staging", "Must be one of: development, test, production"),
        ("API_TOKEN_TTL_DAYS", "abc", "Not a valid integer"),
        ("HUB_HEARTBEAT_SECONDS", "soon", "Not a valid number"),
        ("AXES_FAILURE_LIMIT", "5.5", "Not a valid integer"),
    ],
)
def test_a_malformed_value_stops_the_start(tmp_path, name, value, complaint):
    environment = clean_env(HUB_DATA_DIR=str(tmp_path)) | {name: value}
    result = run(environment, "-c", "import django; django.setup()")
    assert result.returncode != 0
    assert f'EnvValidationError: Environment variable "{name}" invalid' in result.stderr
    assert complaint in result.stderr


# --- The production shape ---------------------------------------------------------------------


def test_production_passes_djangos_deployment_checks_without_a_warning(tmp_path):
    environment = production_env(
        tmp_path,
        S3_BUCKET="hub-images",
        S3_ENDPOINT_URL="http://127.0.0.1:9000",
        S3_ACCESS_KEY="hub-app",
        S3_SECRET_KEY=secrets.token_hex(32),
        TRUST_X_FORWARDED_PROTO="true",
    )
    result = run(environment, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    # One check silenced on purpose: axes.W006 (settings explain why a lockout per account
    # needs no address); nothing else.
    assert "System check identified no issues (1 silenced)." in result.stdout
    assert "WARNING" not in result.stderr


def test_production_uses_redis_and_whitenoise_and_secure_cookies(tmp_path):
    facts = probe(production_env(tmp_path))
    assert facts["broker"] == "redis://127.0.0.1:6379/13"
    assert facts["channel_layer"] == "channels_redis.core.RedisChannelLayer"
    assert facts["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert facts["channels_lite_installed"] is False
    assert facts["databases"] == ["default"]
    assert facts["database_engine"] == "django.db.backends.postgresql"
    assert facts["staticfiles"] == "whitenoise.storage.CompressedManifestStaticFilesStorage"
    assert facts["ssl_redirect"] is True
    assert facts["session_cookie_secure"] is True
    assert facts["proxy_ssl_header"] is None  # trusted only when asked
    assert not (tmp_path / "data").exists(), "production settings wrote into the data folder"


def test_the_proxy_header_is_trusted_only_on_request(tmp_path):
    facts = probe(production_env(tmp_path, TRUST_X_FORWARDED_PROTO="true"))
    assert facts["proxy_ssl_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_s3_bucket_selects_minio_storage_without_signed_urls(tmp_path):
    facts = probe(
        production_env(
            tmp_path,
            S3_BUCKET="hub-images",
            S3_ENDPOINT_URL="http://minio:9000",
            S3_ACCESS_KEY="hub-app",
            S3_SECRET_KEY=secrets.token_hex(32),
        )
    )
    assert facts["storage"] == "storages.backends.s3.S3Storage"
    assert facts["storage_bucket"] == "hub-images"
    assert facts["storage_endpoint"] == "http://minio:9000"
    assert facts["storage_querystring_auth"] is False
    assert facts["storage_file_overwrite"] is False
