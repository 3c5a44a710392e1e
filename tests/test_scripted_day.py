"""A scripted working day on `make run`'s stack: every role in Chromium, then a short soak.

deploy/local/run-embedded.sh starts as `make run` does, in an empty data folder on free
ports (embedded PostgreSQL and Valkey, uvicorn, a Celery worker, beat, the demo seeded).
bench/day (what `make soak` runs for an hour) walks each role's journey in Chromium, then
keeps simulated clinic uploads, reads and MDT chatter going for two minutes. The timings are
printed (`pytest -s` shows them), never asserted: what must hold on a loaded CI machine too
is no crashed process, no lost live event, no server error and no traceback in the logs.
"""

from __future__ import annotations

import pytest

from bench.day.run import day_run
from bench.day.stack import stack_start

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SOAK_SECONDS = 120


@pytest.mark.timeout(1200)
def test_every_role_s_day_then_a_soak_with_nothing_crashed_lost_or_failed(tmp_path):
    stack = stack_start(tmp_path / "hub")
    try:
        result = day_run(stack, soak_seconds=SOAK_SECONDS, uploaders=1)
    finally:
        exit_code = stack.stop()
    report = "\n".join(result.lines)
    checks = result.checks
    assert checks["stack processes not found at the start"] == 0, report
    assert checks["crashed processes"] == 0, report
    assert checks["lost live events"] == 0, report
    assert checks["server errors (5xx seen by clients)"] == 0, report
    assert checks["server errors (5xx in the access log)"] == 0, report
    assert checks["tracebacks in the logs"] == 0, report
    # Every journey step ran to its end, and the soak did the work it simulates.
    assert checks["other failures (refused requests, journey steps)"] == 0, report
    journey_live = {
        "claim -> clinic's page",
        "co-sign -> clinic's page",
        "critical alert -> clinic's page",
    }
    assert journey_live <= set(result.figures.live), report
    counts = result.soak_counts
    assert counts["studies stored"] > 0, report
    assert counts["reports acknowledged"] > 0, report
    assert counts["chat messages stored"] == counts["chat messages"] > 0, report
    assert result.figures.live_expected > counts["referrals sent"], report
    # Ctrl-C (what stop sends) still stopped the whole stack cleanly after the day.
    assert exit_code == 130, report
