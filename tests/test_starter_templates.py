"""A reader's first case finds report templates: the demo, a new alliance made in the admin,
and installs made before either seeded them all get the starter set."""

from __future__ import annotations

import importlib
import re

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client

from alliance.models import Alliance
from reporting.models import ReportTemplate
from reporting.seed import STARTERS

from .factories import UserFactory

pytestmark = pytest.mark.django_db
CODES = {starter["code"] for starter in STARTERS}


def _codes(alliance: Alliance) -> set[str]:
    return set(ReportTemplate.objects.filter(alliance=alliance).values_list("code", flat=True))


def test_the_demo_alliance_has_the_starter_templates():
    call_command("seed_demo")
    assert _codes(Alliance.objects.get(code="jiangcheng")) == CODES


def test_an_alliance_made_in_the_admin_starts_with_the_templates(world):
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    answer = client.post(
        "/admin/alliance/alliance/add/",
        {
            "code": "east",
            "name": "东城医联体",
            "name_en": "East",
            "region_code": "421000",
            "lead_hospital": world.reader.pk,
            "commission": world.commission.pk,
            "created_at_0": "2026-01-05",
            "created_at_1": "09:00:00",
            "members-TOTAL_FORMS": "0",
            "members-INITIAL_FORMS": "0",
        },
    )
    assert answer.status_code == 302, re.findall(
        r"errorlist[^>]*>(.*?)</ul>", answer.content.decode()
    )
    assert _codes(Alliance.objects.get(code="east")) == CODES


def test_the_migration_seeds_alliances_that_have_none_and_leaves_the_others(world):
    own = ReportTemplate.objects.create(
        alliance=world.south, code="own", modality="CT", name="自定义", fields={"fields": []}
    )
    migration = importlib.import_module("reporting.migrations.0004_starter_templates")
    migration.seed(apps, None)
    assert _codes(world.north) == CODES
    assert _codes(world.south) == {own.code}
