"""The commission dashboard in a real browser: ECharts draws the API's figures, a filter
redraws them, an export downloads, and a phone gets charts that fit its screen.

The figures come from the real path: studies and a referral made through the referral
services, rolled up by the analytics refresh, read by the page from /api/v1/analytics/.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from alliance.analytics.refresh import analytics_refresh
from referrals.workflow import services
from tenants import access

from .referral_support import reading_setup, study_at
from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
    sign_in,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def figures(world):
    """Three CT and two MR studies at the north clinic two days ago; one CT sent for a read."""
    reading_setup(world)
    day = (timezone.localdate() - dt.timedelta(days=2)).isoformat()
    studies = [
        study_at(
            world.clinic,
            modality=m,
            body_part="CHEST",
            study_date=day,
            patient_id=f"P-{n}",
            patient_name=f"Zhang^Wei{n}",
            patient_key=f"key-{n}",
        )
        for n, m in enumerate(["CT", "CT", "CT", "MR", "MR"])
    ]
    referral, _ = services.referral_request(
        scope=access.scope_for_user(world.alice, institution_id=world.clinic.pk), study=studies[0]
    )
    services.referral_route(referral.pk)
    analytics_refresh(full=True)
    return studies


def table_rows(page: Page, panel: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#panel-{panel} tbody tr",
        "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))",
    )


def open_dashboard(page: Page, base_url: str, user) -> None:
    sign_in(page, base_url, user)
    page.goto(f"{base_url}/analytics/")
    expect(page.locator("#dashboard")).to_have_attribute("data-state", "ready")


def test_a_commission_viewer_filters_the_figures_and_exports_them(
    world,
    figures,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    page = new_page()
    open_dashboard(page, live_server.url, world.carl)
    root = page.locator("#dashboard")
    expect(root).to_have_attribute("data-charts", "echarts")
    # How fresh: the refresh time the API gives, on the page.
    assert page.locator("#dashboard-freshness").get_attribute("data-refreshed-at")
    modality = page.locator("#panel-volume-modality")
    expect(modality).to_have_attribute("data-state", "ready")
    expect(modality.locator(".dashboard-chart canvas")).to_have_count(1)
    expect(modality).to_have_attribute("data-drawn", "1")
    # by_modality: modality, studies, read remotely, share read remotely.
    assert table_rows(page, "volume-modality") == [
        ["CT", "3", "1", "33.3 %"],
        ["MR", "2", "0", "0.0 %"],
    ]
    assert table_rows(page, "volume-site")[0][:4] == ["北山镇卫生院", "基层", "5", "1"]
    flows = page.locator("#panel-flows")
    expect(flows).to_have_attribute("data-state", "ready")
    expect(flows.locator(".dashboard-chart canvas")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "dashboard-all.png"), full_page=True)

    # A filter: only MR. The charts redraw with the new figures, the address keeps it.
    page.select_option("#filter-modality", "MR")
    expect(root).to_have_attribute("data-filters", re.compile(r"(^|&)modality=MR(&|$)"))
    expect(root).to_have_attribute("data-state", "ready")
    expect(modality).to_have_attribute("data-drawn", "2")
    assert table_rows(page, "volume-modality") == [["MR", "2", "0", "0.0 %"]]
    assert "modality=MR" in page.url

    # The export of that table, with the same filter: the API's CSV.
    with page.expect_download() as download_info:
        modality.locator(".export-csv").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    lines = Path(download.path()).read_text(encoding="utf-8-sig").splitlines()
    assert lines[0] == "modality,studies,remote_read,remote_share"
    assert lines[1:] == ["MR,2,0,0.0"]
    # No patient identity on the page or in the file.
    shown = page.content()
    for study in figures:
        for identifier in (study.patient_name, study.pid, study.study_uid):
            assert identifier not in shown
            assert identifier not in "\n".join(lines)


def test_the_dashboard_fits_a_phone_and_speaks_english(
    world,
    figures,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    page = new_page(locale="en-GB", **PHONE)
    open_dashboard(page, live_server.url, world.carl)  # an English browser: English pages
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("main h1")).to_have_text("Alliance figures")
    assert table_rows(page, "volume-site")[0][:2] == [
        "Beishan Township Health Centre",
        "Grassroots",
    ]
    width = page.evaluate("window.innerWidth")
    canvas = page.locator("#panel-volume-site .dashboard-chart canvas")
    expect(canvas).to_have_count(1)
    assert canvas.bounding_box()["width"] <= width
    assert no_horizontal_overflow(page)
    # Large type for a projector: the charts redraw at the new size.
    drawn = page.get_attribute("#panel-volume-site", "data-drawn")
    page.locator("#dashboard-large").tap()
    expect(page.locator("#dashboard-large")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#panel-volume-site")).not_to_have_attribute("data-drawn", drawn)
    page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)
