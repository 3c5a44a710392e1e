"""Schemathesis over the published OpenAPI (docs/openapi.yaml): every role, no 500, no lie.

A real ASGI server (uvicorn) on the test database, filled with the demo alliance and real
cases in every state (tests/schema_fuzz_support.py). Schemathesis's command line runs the
examples, fuzzing and stateful phases once per demo user and once signed out, with a fixed
seed, and must find no server error, no response outside its documented status codes and no
body that contradicts its documented schema. The coverage phase (about 3,000 deterministic
boundary and invalid cases per caller, a minute each on 2 cores) runs once per access shape:
signed out, the clinic, the reader, the site's admin and the alliance's admin; the referring
doctor, the senior reader, the commission and the MDT member reach the same handlers as one of
those, and their own code paths get the random phases.

Operations that take the caller's own access away (revoking one's token or a membership)
would turn the rest of a run into 401s and 403s: they run in a pass of their own, last.

    pytest tests/test_api_schema_fuzz.py            # several minutes on 2 cores
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command

from .processes import ROOT, VENV_BIN, base_env, free_port, start, wait_for_http
from .schema_fuzz_support import DEMO_ROLES, fuzz_world_build

# `django_db` makes pytest-django create the test database; the world itself is committed
# once for the module (`fuzz_hub`), so every run sees the same hub.
pytestmark = [pytest.mark.integration, pytest.mark.django_db]

SCHEMA = ROOT / "docs" / "openapi.yaml"
CALLERS = (*DEMO_ROLES, "anonymous")
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"
SEED = 20261207
# Per operation and phase: the fuzzing and stateful phases scale with it. The coverage phase
# does not (about 3,000 deterministic boundary and invalid cases per caller, whatever this is).
EXAMPLES = 5
ALL_PHASES = "examples,coverage,fuzzing,stateful"
RANDOM_PHASES = "examples,fuzzing,stateful"
COVERAGE_CALLERS = ("anonymous", "tech", "radiologist", "hospadmin", "allianceadmin")
assert set(COVERAGE_CALLERS) <= set(CALLERS), "a coverage caller that is not a demo user"
# Taking away the caller's own access: run last, in a pass of their own.
OWN_ACCESS_OPERATIONS = ("auth_tokens_destroy", "memberships_destroy")


@dataclass
class FuzzHub:
    url: str
    tokens: dict[str, str]
    reports: Path


@pytest.fixture(scope="module")
def fuzz_hub(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[FuzzHub]:
    """The demo world, committed, served by uvicorn; the database emptied afterwards."""
    from django.conf import settings

    from .test_worker_integration import database_url

    logs = tmp_path_factory.mktemp("schema-fuzz")
    with django_db_blocker.unblock():
        try:
            cache.clear()  # throttle counts of earlier tests: this Redis db is this suite's
            tokens = fuzz_world_build()
            port = free_port()
            env = base_env(
                DATABASE_URL=database_url(),
                REDIS_URL=settings.REDIS_URL,
                HUB_ENV="test",
                HUB_DATA_DIR=str(settings.DATA_DIR),
            )
            argv = [VENV_BIN / "python", "-m", "uvicorn", "alliance.asgi:application"]
            web = start(
                "web", [*argv, "--host", "127.0.0.1", "--port", str(port)], env=env, log_dir=logs
            )
            try:
                wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, watch=[web])
                yield FuzzHub(url=f"http://127.0.0.1:{port}", tokens=tokens, reports=logs)
            finally:
                web.stop(signal.SIGTERM, timeout=15)
        finally:
            # What transactional tests do: the next test starts from an empty database.
            call_command("flush", verbosity=0, interactive=False)
            cache.clear()


def schemathesis_run(hub: FuzzHub, caller: str, *options: str) -> str:
    """One Schemathesis run as `caller`; fails the test with what it found, if anything."""
    auth = [] if caller == "anonymous" else ["-H", f"Authorization: Token {hub.tokens[caller]}"]
    argv = [
        str(VENV_BIN / "schemathesis"),
        "run",
        str(SCHEMA),
        "--url",
        hub.url,
        *auth,
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-junit-path",
        str(hub.reports / f"{caller}-{len(options)}.xml"),
        "--no-color",
        "--output-truncate",
        "true",
        *options,
    ]
    done = subprocess.run(
        argv, cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=540, check=False
    )
    output = done.stdout + done.stderr
    summary = output[output.rfind(" SUMMARY ") :]
    assert done.returncode == 0, f"Schemathesis as {caller} found:\n{_failures(output)}"
    assert "Tested:" in summary, output[-5000:]
    return summary


def _failures(output: str, limit: int = 20_000) -> str:
    """The failures section (each with its curl to reproduce), and the summary."""
    start_at = output.find(" FAILURES ")
    found = output[start_at:] if start_at >= 0 else output
    return found if len(found) <= limit else found[: limit // 2] + "\n…\n" + found[-limit // 2 :]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("caller", CALLERS)
def test_no_server_error_and_no_answer_outside_the_schema(fuzz_hub: FuzzHub, caller: str):
    excluded = [arg for op in OWN_ACCESS_OPERATIONS for arg in ("--exclude-operation-id", op)]
    phases = ALL_PHASES if caller in COVERAGE_CALLERS else RANDOM_PHASES
    summary = schemathesis_run(fuzz_hub, caller, "--phases", phases, *excluded)
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    assert selected, summary
    assert tested, summary
    # Every operation of the document was sent requests (none skipped for want of data).
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) - len(OWN_ACCESS_OPERATIONS)


@pytest.mark.timeout(600)
def test_taking_away_ones_own_access_answers_within_the_schema_too(fuzz_hub: FuzzHub):
    """Last, so the revocations it makes cannot change what the other runs see."""
    included = [arg for op in OWN_ACCESS_OPERATIONS for arg in ("--include-operation-id", op)]
    for caller in CALLERS:
        summary = schemathesis_run(fuzz_hub, caller, *included)
        assert f"Tested: {len(OWN_ACCESS_OPERATIONS)}" in summary, summary
