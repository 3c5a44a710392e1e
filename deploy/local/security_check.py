"""`make security-check`: the security probes, one line per figure.

The probes are the suite's own attack tests (every URL of another tenant, privilege writes,
WebSocket Origin and sign-out, login attacks, hostile bodies, Schemathesis per role, audit
coverage and isolation, headers) plus the DICOM mutation corpus through STOW-RS and the
gateway. After `make test` has run (CI), the test probes are read from its JUnit report
(var/test/junit.xml) instead of being run twice; otherwise they run here.

Figures: each probe's tests passed of run, failures named; the corpus's cases, server errors
and memory growth. Exit status 1 if any probe failed or any server error was counted.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python")

PROBES = {
    "another tenant's objects (every URL, outsider)": ["tests/test_outsider.py"],
    "one access layer and role grants": [
        "tests/test_access.py",
        "tests/test_role_grants.py",
        "tests/test_layout.py",
    ],
    "WebSocket Origin, sign-out, revocation, role change": [
        "tests/test_socket_access.py",
        "tests/test_live.py",
    ],
    "sign-in attacks (lockout, passwords, sessions, second factor, OIDC)": [
        "tests/test_login_lockout.py",
        "tests/test_password_change.py",
        "tests/test_session_timeout.py",
        "tests/test_two_factor.py",
        "tests/test_oidc.py",
    ],
    "hostile input (format suffixes, deep JSON, NUL, bad DICOM)": [
        "tests/test_api_hostile_input.py",
        "tests/test_bad_input.py",
        "tests/test_error_shape.py",
        "tests/test_fuzz_corpus.py",
    ],
    "Schemathesis over the OpenAPI, per role": ["tests/test_api_schema_fuzz.py"],
    "audit coverage, isolation, tamper evidence, shipping": [
        "tests/test_audit.py",
        "tests/test_audit_reads.py",
        "tests/test_api_read_audit.py",
        "tests/test_audit_shipping.py",
    ],
    "headers (CSP, no-store) and production guards": [
        "tests/test_csp_browser.py",
        "tests/test_settings.py",
    ],
    "faults (worker killed, countdowns under the visibility timeout)": ["tests/test_faults.py"],
}


def _cases(report: Path) -> dict[str, tuple[int, list[str]]]:
    """file -> (tests run, failed test names) from a JUnit report."""
    found: dict[str, tuple[int, list[str]]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 - our own file
        module = (case.get("classname") or "").split(".")
        name = "/".join(module[:2]) + ".py" if len(module) >= 2 else ""
        run, failed = found.get(name, (0, []))
        bad = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        found[name] = (
            run + (0 if skipped else 1),
            failed + ([case.get("name", "")] if bad else []),
        )
    return found


def _run_probes(report: Path) -> None:
    files = sorted({f for group in PROBES.values() for f in group})
    subprocess.run(  # noqa: S603 - our own test run
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *files],
        cwd=ROOT,
        check=False,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junit", default=str(ROOT / "var" / "test" / "junit.xml"))
    parser.add_argument("--fuzz-cases", type=int, default=10_000)
    parser.add_argument("--gateway-cases", type=int, default=10_000)
    options = parser.parse_args()
    report = Path(options.junit)
    if not report.exists():
        print(f"[security-check] no test report at {report}: running the probes", flush=True)
        report = ROOT / "var" / "security-check" / "junit.xml"
        report.parent.mkdir(parents=True, exist_ok=True)
        _run_probes(report)
    cases = _cases(report)
    ok = True
    for probe, files in PROBES.items():
        run = sum(cases.get(f, (0, []))[0] for f in files)
        failed = [name for f in files for name in cases.get(f, (0, []))[1]]
        missing = [f for f in files if f not in cases]
        ok &= not failed and not missing and run > 0
        line = f"PROBE {probe}: {run - len(failed)}/{run} tests passed"
        if failed:
            line += f"; FAILED: {', '.join(failed[:5])}"
        if missing:
            line += f"; NOT RUN: {', '.join(missing)}"
        print(line, flush=True)

    fuzz = subprocess.run(  # noqa: S603 - our own command
        [
            PY,
            "manage.py",
            "bench_fuzz",
            # Made (and migrated) if missing: on a fresh machine only the suite's test
            # database exists.
            "--database-url",
            os.environ["DATABASE_URL"],
            "--cases",
            str(options.fuzz_cases),
            "--gateway-cases",
            str(options.gateway_cases),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"PYTHONWARNINGS": "ignore"},
    )
    figures = re.findall(r"^(FIGURE fuzz\.\S+ = .*|GOAL .*)$", fuzz.stdout, re.MULTILINE)
    for figure in figures:
        print(figure, flush=True)
    errors = re.search(r"^FIGURE fuzz\.server_errors = (\S+)", fuzz.stdout, re.MULTILINE)
    if fuzz.returncode or errors is None or float(errors.group(1)) != 0:
        ok = False
        print(f"FUZZ FAILED (exit {fuzz.returncode}):\n{fuzz.stderr[-3000:]}", flush=True)
    print(f"SECURITY CHECK: {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
