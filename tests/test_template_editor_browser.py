"""The template editor in a real browser: the alliance administrator edits a starter template
row by row (add a measurement, move it, remove a field), saves, finds version 2 in the
history and what changed; a radiologist starting a report then gets version 2, while a
report already written keeps version 1. Also at phone width."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from reporting import services
from reporting.models import Report, ReportTemplate

from .reporting_support import desk_make, scope
from .test_browser import (  # noqa: F401 - fixtures
    PHONE,
    _orm_beside_playwright,
    browser,
    new_page,
    no_horizontal_overflow,
    sign_in,
)
from .test_csp_browser import WATCH, violations

pytestmark = pytest.mark.browser


@pytest.fixture
def desk(world, django_capture_on_commit_callbacks):
    return desk_make(world, django_capture_on_commit_callbacks)


def test_an_admin_edits_a_starter_template_and_the_next_report_uses_version_2(
    desk,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    base = live_server.url
    v1 = desk.ct_chest
    # A report already written with version 1 (sam's MR case, on the chest template).
    earlier = services.report_create(scope=desk.sam(), referral_id=desk.mr.pk, template_id=v1.pk)

    page = new_page(locale="en-US")
    sign_in(page, base, desk.ada)
    page.goto(f"{base}/console/templates/")
    row = page.locator("#template-list tr[data-code='ct-chest']")
    expect(row.locator("[data-col=version]")).to_have_text("v1")
    row.get_by_role("link", name="Edit").click()
    expect(page.locator("#version-note")).to_contain_text("Saving makes version 2")

    rows = page.locator("#field-rows > li:not([hidden])")
    expect(rows).to_have_count(4)
    # A new measurement field: its unit shows once the type says so, options never do.
    page.click("#field-add")
    expect(rows).to_have_count(5)
    new = rows.nth(4)
    expect(new.locator(".row-number")).to_have_text("Field 5")
    new.get_by_label("Label (Chinese)").fill("最大结节直径")
    new.get_by_label("Label (English)").fill("Largest nodule")
    expect(new.get_by_label("Unit")).to_be_hidden()
    new.get_by_label("Type").select_option("measurement")
    new.get_by_label("Unit").fill("mm")
    expect(new.get_by_label("Options")).to_be_hidden()
    # Up one place, above "Recommendation", which is then removed.
    new.get_by_role("button", name="Move up").click()
    expect(rows.nth(3).get_by_label("Label (English)")).to_have_value("Largest nodule")
    rows.nth(4).get_by_role("button", name="Remove").click()
    expect(rows).to_have_count(4)
    page.screenshot(path=str(tmp_path / "editor.png"), full_page=True)
    page.click("#template-save")

    # The history: version 2 by Ada, in use; version 1 kept read-only.
    expect(page.locator(".message.success")).to_contain_text("Saved as version 2")
    expect(page.locator("#template-versions tr[data-version='2'] td").nth(1)).to_have_text("Ada")
    expect(page.locator("#template-versions tr[data-version='2'] [data-col=state]")).to_have_text(
        "In use"
    )
    expect(page.locator("#template-versions tr[data-version='1'] [data-col=state]")).to_have_text(
        "Earlier version (read-only)"
    )
    expect(page.locator("#template-versions tr[data-version='1'] [data-col=reports]")).to_have_text(
        "1"
    )
    page.locator("#template-versions tr[data-version='2']").get_by_role(
        "link", name="What changed"
    ).click()
    diff = page.locator("#template-diff")
    expect(page.locator("h1")).to_have_text("What changed from version 1 to version 2")
    expect(diff.locator(".diff-row", has_text="Largest nodule")).to_contain_text("Added")
    expect(diff.locator(".diff-row", has_text="Recommendation")).to_contain_text("Removed")
    page.screenshot(path=str(tmp_path / "diff.png"), full_page=True)

    v2 = ReportTemplate.objects.get(alliance=desk.world.north, code="ct-chest", version=2)
    assert [f["key"] for f in v2.fields["fields"]] == [
        "findings",
        "lung_rads",
        "impression",
        "largest_nodule",
    ]
    assert v2.fields["fields"][3]["unit"] == "mm"
    earlier.refresh_from_db()
    assert (earlier.template_id, earlier.template_version) == (v1.pk, 1)

    # The radiologist's next report: version 2 is offered, version 1 is not.
    reader = new_page()
    sign_in(reader, base, desk.world.rita)
    reader.goto(f"{base}/reports/{desk.chest.pk}/edit/")
    options = reader.locator("#template-select option")
    expect(options.filter(has_text="胸部 CT")).to_have_text(["胸部 CT (v2)"])
    reader.select_option("#template-select", str(v2.pk))
    reader.click("#report-start button[type=submit]")
    expect(reader.locator("#field-largest_nodule")).to_be_visible()
    expect(reader.locator(".report-pane .unit")).to_have_text("mm")
    expect(reader.locator("#field-recommendation")).to_have_count(0)
    report = Report.objects.get(referral=desk.chest)
    assert (report.template_id, report.template_version) == (v2.pk, 2)


def test_the_editor_fits_a_phone_under_the_content_security_policy(
    desk,
    live_server,
    new_page,  # noqa: F811 - the fixture
    tmp_path: Path,
):
    base = live_server.url
    page = new_page(**PHONE)
    page.add_init_script(WATCH)  # and nothing the Content-Security-Policy blocks
    sign_in(page, base, desk.ada)
    services.template_version_add(
        scope=scope(desk.ada, desk.world.reader),
        template_id=desk.ct_chest.pk,
        fields=desk.ct_chest.fields,
        name_en="CT of the chest",
    )
    pk = desk.ct_chest.pk
    for path in (
        "/console/templates/",
        f"/console/templates/{pk}/edit/",
        f"/console/templates/{pk}/history/",
        f"/console/templates/{pk}/diff/",
        f"/console/templates/{pk}/",
        "/console/templates/new/",
    ):
        page.goto(base + path)
        expect(page.locator("h1")).to_be_visible()
        assert no_horizontal_overflow(page), path
        assert violations(page) == [], path
        page.screenshot(path=str(tmp_path / f"phone-{path.strip('/').replace('/', '-')}.png"))
    # The row tools are reachable by touch at this width.
    page.goto(f"{base}/console/templates/{pk}/edit/")
    page.locator("#field-add").tap()
    expect(page.locator("#field-rows > li:not([hidden])")).to_have_count(5)
    assert no_horizontal_overflow(page)
    assert violations(page) == []
