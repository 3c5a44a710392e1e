"""The embedded default (SQLite) computes the rollups through the ORM (rollup_orm.py); the
production shape (PostgreSQL) in set-based SQL (rollup_sql.py). Both give the same rows."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from freezegun import freeze_time

from alliance.analytics import refresh
from alliance.analytics.models import ReadingRollup, StudyRollup

from .analytics_support import T0, analytics_world

pytestmark = pytest.mark.django_db


def rows() -> dict[str, list[tuple]]:
    """Every rollup row, without its id, in a fixed order."""
    out = {}
    for model in (ReadingRollup, StudyRollup):
        fields = [f.attname for f in model._meta.concrete_fields if f.name != "id"]
        out[model.__name__] = sorted(model.objects.values_list(*fields), key=repr)
    return out


def orm_path(monkeypatch) -> None:
    monkeypatch.setattr(refresh, "rollups_in_sql", lambda: False)


def test_the_orm_and_the_sql_refresh_write_identical_rows(
    world, monkeypatch, django_capture_on_commit_callbacks
):
    from .referral_support import study_at

    analytics_world(world, django_capture_on_commit_callbacks)
    with freeze_time(T0.replace(day=28)):
        refresh.analytics_refresh(full=True)
    by_sql = rows()
    assert by_sql["ReadingRollup"]
    assert by_sql["StudyRollup"]
    with monkeypatch.context() as patch:
        orm_path(patch)
        with freeze_time(T0.replace(day=28, hour=2)):
            assert refresh.analytics_refresh(full=True).changed
        assert rows() == by_sql

        # A new study (a repeat of P-1's chest, at another site), found incrementally.
        with freeze_time(T0.replace(day=29)):
            study_at(
                world.reader,
                modality="CT",
                body_part="CHEST",
                patient_id="R-1",
                patient_key="key-p1",
                study_date="2026-11-29",
            )
        with freeze_time(T0.replace(day=29, hour=3)):
            incremental = refresh.analytics_refresh()
        assert not incremental.full
        assert incremental.study_days >= 1
        by_orm = rows()
    assert by_orm != by_sql
    with freeze_time(T0.replace(day=29, hour=4)):
        refresh.analytics_refresh(full=True)
    assert rows() == by_orm


def test_the_command_refreshes_on_the_orm_path(
    world, monkeypatch, capsys, django_capture_on_commit_callbacks
):
    analytics_world(world, django_capture_on_commit_callbacks)
    orm_path(monkeypatch)
    with freeze_time(T0.replace(day=28)):
        call_command("analytics_refresh", "--full")
    assert "analytics refresh (full)" in capsys.readouterr().out
    assert StudyRollup.objects.filter(grain="day").exists()
    assert ReadingRollup.objects.filter(grain="month").exists()
