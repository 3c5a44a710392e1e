"""Figure sets are cached per rollup version and computed again ahead after a refresh that
changed the rollups (refresh-ahead), for the views viewers asked for."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from freezegun import freeze_time

from alliance.analytics import selectors
from alliance.analytics.cache import ASKED_KEY, warm_recent
from alliance.analytics.refresh import analytics_refresh
from alliance.analytics.tasks import analytics_refresh_task
from tenants.models import Membership

from .analytics_support import T0, analytics_world
from .conftest import api_client_for

pytestmark = pytest.mark.django_db
NOV = {"date_from": "2026-11-01", "date_to": "2026-11-30"}


@pytest.fixture
def counted(world, django_capture_on_commit_callbacks, monkeypatch):
    """The small world refreshed, carl's client, and a count of volumes computations."""
    cache.delete(ASKED_KEY)
    analytics_world(world, django_capture_on_commit_callbacks)
    with freeze_time(T0.replace(day=28)):
        analytics_refresh(full=True)
    calls = []
    original = selectors.FIGURE_SETS["volumes"]

    def volumes(selection):
        calls.append(selection.echo())
        return original(selection)

    monkeypatch.setitem(selectors.FIGURE_SETS, "volumes", volumes)
    client = api_client_for(world.carl)

    def get(**params):
        response = client.get("/api/v1/analytics/volumes/", {**NOV, **params})
        assert response.status_code == 200, response.content
        return response.json()

    get.calls = calls  # type: ignore[attr-defined]
    return get


def test_a_refresh_that_changes_nothing_keeps_the_cached_answer(counted):
    first = counted()
    assert len(counted.calls) == 1
    with freeze_time(T0.replace(day=28, hour=5)):
        result = analytics_refresh()
    assert not result.changed
    again = counted()
    assert len(counted.calls) == 1, "computed again though the rollups did not change"
    assert again["totals"] == first["totals"]
    # ...but it says how fresh the rollups are: as of the last refresh.
    assert again["meta"]["refreshed_at"].startswith("2026-11-28T05:00")
    assert first["meta"]["refreshed_at"].startswith("2026-11-28T01:00")


def test_after_a_refresh_that_changed_the_rollups_asked_views_are_computed_ahead(counted, world):
    from .referral_support import study_at

    assert counted()["totals"]["studies"] == 6
    assert len(counted.calls) == 1
    with freeze_time(T0.replace(day=29)):
        study_at(
            world.clinic,
            modality="US",
            body_part="ABDOMEN",
            patient_id="P-9",
            patient_key="key-p9",
            study_date="2026-11-29",
        )
    outcome = analytics_refresh_task()
    assert outcome["days"] >= 1
    assert outcome["warmed"] == 1
    assert len(counted.calls) == 2  # computed by the task, under the new version
    answer = counted()
    assert len(counted.calls) == 2, "the viewer waited for a computation the task had done"
    assert answer["totals"]["studies"] == 7


def test_a_view_is_computed_ahead_only_for_a_viewer_who_still_may_see_it(counted, world):
    counted()
    counted(modality="CT")
    assert len(counted.calls) == 2
    Membership.objects.filter(user=world.carl).delete()
    with freeze_time(T0.replace(day=29)):
        analytics_refresh(full=True)
    assert warm_recent() == 0
    assert len(counted.calls) == 2


def test_views_asked_long_ago_are_not_computed_ahead(counted, settings):
    counted()
    settings.HUB_ANALYTICS_WARM_HOURS = 0
    with freeze_time(T0.replace(day=29)):
        analytics_refresh(full=True)
    assert warm_recent() == 0
    settings.HUB_ANALYTICS_WARM_HOURS = 24
    assert warm_recent() == 1
