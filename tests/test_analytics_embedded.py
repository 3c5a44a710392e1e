"""The analytics rollups are PostgreSQL SQL: on the embedded SQLite default the refresh
says so (command error, a warning from beat's task) and changes nothing."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from alliance.analytics import refresh
from alliance.analytics.models import RefreshState


@pytest.mark.django_db
def test_without_postgresql_the_refresh_says_why_and_writes_nothing(monkeypatch):
    monkeypatch.setattr(refresh, "rollups_supported", lambda: False)
    result = refresh.analytics_refresh(full=True)
    assert result.skipped
    assert "PostgreSQL" in result.reason
    assert not RefreshState.objects.filter(refreshed_at__isnull=False).exists()
    with pytest.raises(CommandError, match="PostgreSQL"):
        call_command("analytics_refresh")


@pytest.mark.django_db
def test_on_postgresql_the_refresh_runs():
    assert refresh.rollups_supported()
    result = refresh.analytics_refresh(full=True)
    assert not result.skipped
    assert result.refreshed_at is not None
