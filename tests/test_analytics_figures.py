"""Analytics figures on the small hand-checked world equal the expected numbers exactly."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from alliance.analytics import refresh
from alliance.analytics.models import ReadingRollup, StudyRollup
from alliance.analytics.refresh import analytics_refresh

from .analytics_support import T0, analytics_world
from .conftest import api_client_for

pytestmark = pytest.mark.django_db
NOV = {"date_from": "2026-11-01", "date_to": "2026-11-30"}


@pytest.fixture(params=["sql", "orm"])
def figures(request, world, django_capture_on_commit_callbacks, monkeypatch):
    """The hand-checked world's rollups, from PostgreSQL's SQL or from the ORM path the
    embedded default uses: the figures must be the same either way."""
    if request.param == "orm":
        monkeypatch.setattr(refresh, "rollups_in_sql", lambda: False)
    aw = analytics_world(world, django_capture_on_commit_callbacks)
    with freeze_time(T0.replace(day=28)):
        analytics_refresh(full=True)
    client = api_client_for(world.carl)

    def get(name: str, **params):
        response = client.get(f"/api/v1/analytics/{name}/", {**NOV, **params})
        assert response.status_code == 200, response.content
        return response.json()

    get.aw = aw  # type: ignore[attr-defined]
    return get


def test_the_world_is_as_described(figures):
    aw = figures.aw
    assert aw.head.status == "returned"
    assert aw.stat.status == "routed"
    assert aw.stat.escalation_level == 1


def test_volumes(figures):
    v = figures("volumes")
    assert v["totals"] == {"studies": 6, "remote_read": 4, "remote_share": 0.6667, "referrals": 4}
    by_site = {r["site_code"]: (r["studies"], r["remote_read"]) for r in v["tables"]["by_site"]}
    assert by_site == {"north-clinic": (5, 4), "north-central": (1, 0)}
    assert {r["modality"]: r["studies"] for r in v["tables"]["by_modality"]} == {"CT": 5, "MR": 1}
    assert [(r["period"], r["studies"]) for r in v["tables"]["by_period"]] == [
        ("2026-11-20", 4),
        ("2026-11-25", 1),
        ("2026-11-27", 1),
    ]
    assert v["meta"]["refreshed_at"].startswith("2026-11-28")


def test_turnaround_breaches_and_escalations(figures):
    t = figures("turnaround")
    assert t["meta"]["percentile_method"] == "exact"
    assert t["totals"] == {
        "referrals": 4,
        "reported": 2,
        "p50_minutes": 30.0,
        "p90_minutes": 90.0,
        "mean_minutes": 60.0,
        "breached": 1,
        "breach_rate": 0.25,
        "escalations": 1,
    }
    prio = {r["priority"]: r for r in t["tables"]["by_priority"]}
    assert (
        prio["routine"]["referrals"],
        prio["routine"]["reported"],
        prio["routine"]["p50_minutes"],
        prio["routine"]["p90_minutes"],
    ) == (3, 2, 30.0, 90.0)
    assert (
        prio["stat"]["referrals"],
        prio["stat"]["breached"],
        prio["stat"]["reported"],
        prio["stat"]["p50_minutes"],
    ) == (1, 1, 0, None)
    [reader] = t["tables"]["by_reader"]
    assert (reader["reader_code"], reader["reported"], reader["p90_minutes"]) == (
        "north-central",
        2,
        90.0,
    )


def test_histogram_percentiles_are_within_their_stated_precision(figures, settings):
    settings.HUB_ANALYTICS_EXACT_MAX = 0
    t = figures("turnaround")
    assert t["meta"]["percentile_method"] == "histogram"
    assert 30 <= t["totals"]["p50_minutes"] <= 30 * 1.3
    assert 90 / 1.3 <= t["totals"]["p90_minutes"] <= 90 * 1.3


def test_flows_workload_scanners(figures):
    f = figures("flows")
    assert f["totals"] == {
        "up": 4,
        "down": 0,
        "same": 0,
        "unrouted": 0,
        "unknown": 0,
        "referrals": 4,
    }
    assert f["tables"]["links"] == [
        {
            "source_tier": "grassroots",
            "target_tier": "central",
            "kind": "remote_read",
            "direction": "up",
            "referrals": 4,
        }
    ]
    [w] = figures("workload")["tables"]["by_reader"]
    assert (
        w["reader_code"],
        w["referrals"],
        w["reported"],
        w["open_now"],
        w["capacity"],
        w["readers"],
        w["capacity_use"],
        w["reported_per_day"],
    ) == ("north-central", 4, 2, 1, 40, 3, 0.025, 0.07)
    s = figures("scanners")
    rows = {r["modality"]: r for r in s["tables"]["by_site_modality"]}
    assert set(rows) == {"CT", "MR"}
    assert (
        rows["CT"]["site_code"],
        rows["CT"]["studies"],
        rows["CT"]["studies_per_day"],
        rows["CT"]["capacity_per_day"],
        rows["CT"]["utilisation"],
    ) == ("north-clinic", 4, 0.13, 40, 0.0033)
    assert (rows["MR"]["studies"], rows["MR"]["utilisation"]) == (1, 0.0017)


def test_quality(figures):
    q = figures("quality")
    assert q["totals"] == {
        "referrals": 4,
        "returned": 1,
        "return_rate": 0.25,
        "second_reads": 1,
        "agree": 0,
        "minor": 1,
        "major": 0,
        "discrepancy_rate": 1.0,
        "critical": 1,
        "critical_acknowledged": 1,
        "critical_in_time": 1,
        "critical_escalated": 0,
        "critical_mean_ack_minutes": 10.0,
    }
    assert [
        (r["site_code"], r["reason"], r["returned"]) for r in q["tables"]["return_reasons"]
    ] == [("north-clinic", "motion_artefact", 1)]
    [site] = q["tables"]["by_site"]
    assert (site["site_code"], site["return_rate"]) == ("north-clinic", 0.25)


def test_recognition(figures):
    r = figures("recognition")
    assert r["totals"] == {
        "studies": 6,
        "repeats_30d": 2,
        "repeats_cross_site": 1,
        "referrals": 4,
        "priors_shared": 1,
        "repeat_rate": 0.3333,
        "priors_shared_rate": 0.25,
    }


def test_filters_narrow_the_figures(figures):
    assert figures("volumes", modality="MR")["totals"]["studies"] == 1
    assert figures("volumes", tier="central")["totals"]["studies"] == 1
    assert figures("turnaround", priority="stat")["totals"]["reported"] == 0
    assert figures("volumes", region="42")["totals"]["studies"] == 6
    assert figures("volumes", region="11")["totals"]["studies"] == 0
    assert figures("volumes", date_from="2026-11-21")["totals"]["studies"] == 2
    october = figures("recognition", date_from="2026-10-01", date_to="2026-10-31")
    assert october["totals"]["studies"] == 1
    # A year's view reads month rows and gives the same numbers.
    year = figures("volumes", date_from="2026-01-01", date_to="2026-12-31")
    assert year["totals"]["studies"] == 7
    assert year["meta"]["filters"]["granularity"] == "month"
    assert [(p["period"], p["studies"]) for p in year["tables"]["by_period"]] == [
        ("2026-10-01", 1),
        ("2026-11-01", 6),
    ]


def test_incremental_refresh_picks_up_a_change_and_is_idempotent(figures, world):
    from .referral_support import study_at

    with freeze_time(T0.replace(day=29)):
        study_at(
            world.clinic,
            modality="US",
            body_part="ABDOMEN",
            patient_id="P-9",
            patient_key="key-p9",
            study_date="2026-11-29",
        )
        before = (ReadingRollup.objects.count(), StudyRollup.objects.count())
        first = analytics_refresh()
        assert not first.full
        assert first.study_days >= 1
        assert figures("volumes")["totals"]["studies"] == 7
        analytics_refresh()
        analytics_refresh()
        assert figures("volumes")["totals"]["studies"] == 7
        assert ReadingRollup.objects.count() == before[0]
        assert StudyRollup.objects.count() == before[1] + 2  # its day row and month row
