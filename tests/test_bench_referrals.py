"""The referral benchmarks at a tiny scale, so they cannot rot: the scale seed, and each
bench command end to end against real processes (uvicorn, a Celery worker and beat on
Redis, Chromium). No timing is asserted: the commands print figures (docs/benchmarks.md)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

from alliance.models import Alliance, AllianceMember, RoutingRule, Tier
from referrals.archive.synthetic import HUB_UID_ROOT
from referrals.models import Referral, ReferralEvent, ReferralStudy, Study, StudyGrant

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIGURE_RE = re.compile(r"^FIGURE (\S+(?: \S+)*?) = (\S+) ", re.MULTILINE)
TINY = ["--studies", "2000", "--sites", "5"]
OPEN = ("routed", "claimed", "reporting")


def run(command: str, *args: str, log_dir) -> tuple[dict[str, float], str]:
    out = io.StringIO()
    call_command(command, *args, "--log-dir", str(log_dir), stdout=out)
    text = out.getvalue()
    figures = {name: float(value) for name, value in FIGURE_RE.findall(text)}
    assert figures, text
    assert re.search(r"^machine: nproc=", text, re.MULTILINE), text
    return figures, text


def test_seed_scale_writes_a_whole_world_once():
    out = io.StringIO()
    call_command("seed_scale", *TINY, "--open", "40", stdout=out)
    assert "seeded 2000 studies" in out.getvalue()
    [alliance] = Alliance.objects.filter(code__startswith="scale-")
    tiers = set(AllianceMember.objects.filter(alliance=alliance).values_list("tier", flat=True))
    assert tiers == {Tier.CENTRAL, Tier.COUNTY, Tier.GRASSROOTS}
    assert RoutingRule.objects.filter(alliance=alliance).count() >= 7
    assert Study.objects.count() == 2000
    assert not Study.objects.filter(stable_at__isnull=True).exists()  # no hook fires later
    referrals = Referral.objects.filter(alliance=alliance)
    assert referrals.filter(status__in=OPEN).count() == 40
    assert (
        referrals.filter(status__in=["delivered", "acknowledged"]).count() > referrals.count() // 2
    )
    # Every referral has its timeline and its grant; open ones carry the patient's priors.
    assert ReferralEvent.objects.filter(action="create").count() == referrals.count()
    assert StudyGrant.objects.filter(study_id__in=referrals.values("study_id")).exists()
    assert ReferralStudy.objects.filter(is_prior=True).exists()
    people = Study.objects.values("patient_key").distinct().count()
    assert people < 2000  # people come back: priors exist

    again = io.StringIO()
    call_command("seed_scale", *TINY, stdout=again)
    assert "already seeded" in again.getvalue()
    assert Study.objects.count() == 2000


@pytest.mark.browser
def test_bench_worklist_times_each_shape_and_the_first_paint(tmp_path):
    figures, _text = run(
        "bench_worklist",
        *TINY,
        "--readers",
        "2",
        "--repeat",
        "2",
        "--workers",
        "1",
        "--paint-runs",
        "1",
        "--explain",
        log_dir=tmp_path / "logs",
    )
    shapes = [name for name in figures if name.startswith("worklist.p95_ms[")]
    assert len(shapes) >= 8
    assert figures["worklist.all.p95_ms"] > 0
    assert figures["worklist.page.first_paint.p95_ms"] > 0


def test_bench_routing_routes_every_stable_study_through_the_worker(tmp_path):
    figures, text = run(
        "bench_routing",
        *TINY,
        "--count",
        "6",
        "--rate",
        "50",
        "--concurrency",
        "1",
        "--warmup",
        "1",
        log_dir=tmp_path / "logs",
    )
    assert figures["routing.p95_ms"] >= figures["routing.p50_ms"] > 0
    assert "stable → routed: n=6" in text
    # Without --keep-data the run's studies and referrals are gone again.
    assert not Study.objects.filter(study_uid__startswith=f"{HUB_UID_ROOT}7.").exists()


def test_bench_claims_claims_every_case_once(tmp_path):
    figures, text = run(
        "bench_claims",
        *TINY,
        "--readers",
        "5",
        "--cases",
        "30",
        "--contended",
        "2",
        "--workers",
        "1",
        log_dir=tmp_path / "logs",
    )
    assert figures["claims.per_s"] > 0
    assert figures["claims.double"] == 0
    assert figures["claims.contended.double"] == 0
    assert "GOAL zero double claims: met" in text, text
