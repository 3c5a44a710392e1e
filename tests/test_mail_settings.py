"""Mail settings from the environment: files under the data folder with no env at all (make
run), SMTP in production or once a host is named, and no contradictory TLS."""

from __future__ import annotations

import json

from .test_settings import clean_env, production_env, run

PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({n: str(getattr(s, n)) for n in ('EMAIL_BACKEND', 'EMAIL_FILE_PATH', "
    "'EMAIL_HOST', 'EMAIL_PORT', 'EMAIL_USE_TLS', 'PASSWORD_RESET_TIMEOUT')}))"
)


def mail_settings(environment: dict[str, str]) -> dict[str, str]:
    result = run(environment, "-c", PROBE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_no_environment_writes_mail_as_files_in_the_data_folder(tmp_path):
    chosen = mail_settings(clean_env(HUB_DATA_DIR=str(tmp_path)))
    assert chosen["EMAIL_BACKEND"] == "django.core.mail.backends.filebased.EmailBackend"
    assert chosen["EMAIL_FILE_PATH"] == str(tmp_path / "mail")
    assert chosen["PASSWORD_RESET_TIMEOUT"] == str(3 * 24 * 3600)


def test_a_named_host_or_production_sends_by_smtp(tmp_path):
    named = mail_settings(
        clean_env(
            HUB_DATA_DIR=str(tmp_path),
            EMAIL_HOST="smtp.hospital.example",
            EMAIL_PORT="587",
            EMAIL_USE_TLS="true",
        )
    )
    assert named["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (named["EMAIL_HOST"], named["EMAIL_PORT"], named["EMAIL_USE_TLS"]) == (
        "smtp.hospital.example",
        "587",
        "True",
    )
    production = mail_settings(production_env(tmp_path))
    assert production["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"


def test_tls_and_ssl_together_stop_the_start(tmp_path):
    environment = clean_env(HUB_DATA_DIR=str(tmp_path), EMAIL_USE_TLS="true", EMAIL_USE_SSL="1")
    result = run(environment, "-c", "import django; django.setup()")
    assert result.returncode != 0
    assert "EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive" in result.stderr
