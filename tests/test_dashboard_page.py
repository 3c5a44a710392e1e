"""The commission dashboard page (/analytics/): who may open it, its filters, its words.

The figures are the analytics API's (tests/test_analytics_*.py); this page only frames them.
"""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from alliance.frontend.checks import vendor_packages_installed
from tenants.models import Role

from .conftest import _person
from .factories import InstitutionFactory, join

pytestmark = pytest.mark.django_db


def web(user, language: str = "en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def _alliance_admin(world):
    return _person("ada", "艾达", "Ada", world.reader, Role.ALLIANCE_ADMIN)


def _option_values(html: str, select_id: str) -> list[str]:
    block = re.search(rf'<select name="\w+" id="{select_id}">(.*?)</select>', html, re.S)
    assert block, select_id
    return re.findall(r'<option value="([^"]*)"', block.group(1))


def test_commission_viewers_and_alliance_admins_open_the_dashboard(world):
    for user in (world.carl, _alliance_admin(world)):
        page = web(user).get("/analytics/")
        assert page.status_code == 200, user.username
        html = page.content.decode()
        assert _option_values(html, "filter-alliance") == ["", str(world.north.pk)]
        assert set(_option_values(html, "filter-institution")) == {
            "",
            str(world.clinic.pk),
            str(world.reader.pk),
        }
        assert _option_values(html, "filter-tier") == ["", "grassroots", "county", "central"]
        # Every panel: a chart, a table view and both exports.
        assert html.count('class="card dashboard-panel"') == 14
        assert html.count("<table") == html.count('class="export-csv"') == 14
        assert html.count('class="export-xlsx"') == 14
        assert 'data-api-base="/api/v1/analytics/"' in html
        assert "/static/vendor/echarts/echarts.min.js" in html
        assert 'href="/analytics/" aria-current="page"' in html  # in the navigation


def test_other_roles_are_refused_and_not_offered_the_page(world):
    for user in (world.alice, world.adam, world.rita, world.oscar, world.otto):
        client = web(user)
        assert client.get("/analytics/").status_code == 403, user.username
        assert 'href="/analytics/"' not in client.get("/").content.decode(), user.username
    assert 'href="/analytics/"' in web(world.carl).get("/").content.decode()
    anonymous = Client().get("/analytics/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_a_commission_sees_only_the_alliances_it_oversees(world):
    # A second north-side alliance under the same commission, and one under another.
    from .factories import AllianceFactory

    east = AllianceFactory(code="east", lead_hospital=world.reader, commission=world.commission)
    east_site = InstitutionFactory(code="east-clinic", name_en="East Clinic", region_code="421100")
    join(east, east_site)
    html = web(world.carl).get("/analytics/").content.decode()
    assert _option_values(html, "filter-alliance") == ["", str(east.pk), str(world.north.pk)]
    assert _option_values(html, "filter-region") == ["", "421000", "421100"]
    assert str(world.outsider.pk) not in _option_values(html, "filter-institution")
    assert "Nanling" not in html
    assert f'data-alliances="{east.pk}"' in html  # narrows the list by alliance


def test_the_page_keeps_valid_filters_and_refuses_bad_ones(world):
    client = web(world.carl)
    kept = client.get(
        f"/analytics/?alliance={world.north.pk}&tier=grassroots&modality=CT"
        "&date_from=2025-01-01&date_to=2025-03-31"
    ).content.decode()
    assert f'<option value="{world.north.pk}" selected>' in kept
    assert '<option value="grassroots" selected>' in kept
    assert '<option value="CT" selected>' in kept
    assert 'value="2025-01-01"' in kept
    assert 'value="2025-03-31"' in kept
    # The export links carry the same filters, so they work without JavaScript too.
    assert (
        f'href="/api/v1/analytics/volumes/?alliance={world.north.pk}&amp;tier=grassroots'
        "&amp;modality=CT&amp;date_from=2025-01-01&amp;date_to=2025-03-31&amp;format=csv"
        '&amp;table=by_site"'
    ) in kept
    for query in (
        "alliance=abc",
        "tier=bogus",
        "modality=ct;drop",
        "region=421",
        "date_from=2025-13-01",
        "date_from=2025-03-01&date_to=2025-01-01",
        "date_from=2015-01-01&date_to=2025-01-01",
    ):
        answer = client.get(f"/analytics/?{query}")
        assert answer.status_code == 400, query
        assert 'role="alert"' in answer.content.decode(), query
    # Another alliance's id, or another alliance's site, answers like one that does not exist.
    for name, theirs in (("alliance", world.south.pk), ("institution", world.outsider.pk)):
        their = client.get(f"/analytics/?{name}={theirs}")
        missing = client.get(f"/analytics/?{name}=999999999")
        assert their.status_code == missing.status_code == 404
        assert their.content == missing.content


def test_the_page_speaks_chinese_and_english(world):
    zh = web(world.carl, "zh-hans").get("/analytics/").content.decode()
    assert '<html lang="zh-hans">' in zh
    assert 'data-lang="zh-hans"' in zh  # ECharts' ZH locale
    assert "基层" in zh  # the tier filter, from the catalog
    en = web(world.carl, "en").get("/analytics/").content.decode()
    assert '<html lang="en">' in en
    assert 'data-lang="en"' in en
    assert "<h1>Alliance figures</h1>" in en
    assert ">Grassroots</option>" in en
    strings = json.loads(
        re.search(
            r'<script id="dashboard-strings" type="application/json">(.*?)</script>', en, re.S
        ).group(1)
    )
    assert strings["asOf"] == "Figures as of %(time)s."
    assert strings["columns"]["p90_minutes"] == "p90, minutes"
    assert strings["values"]["tier"]["grassroots"] == "Grassroots"


def test_the_page_names_no_patient(world):
    from .referral_support import reading_setup, study_at

    reading_setup(world)
    study = study_at(world.clinic, modality="CT", body_part="CHEST")
    html = web(world.carl).get("/analytics/").content.decode()
    for identifier in (study.patient.name, study.patient_name, study.pid, study.study_uid):
        assert identifier
        assert identifier not in html, identifier


def test_echarts_is_installed_from_npm_and_served(world):
    call_command("check", "--fail-level", "ERROR")
    assert vendor_packages_installed() == []
    found = finders.find("vendor/echarts/echarts.min.js")
    assert found
    with open(found, encoding="utf-8") as f:
        head = f.read(4000)
    assert "Apache" in head  # the package's own licence header, not a stand-in
    # Only the package's dist is exposed, not its sources.
    assert finders.find("vendor/echarts/lib/echarts.js") is None
    client = web(world.carl)
    served = client.get("/static/vendor/echarts/echarts.min.js")
    assert served.status_code == 200
