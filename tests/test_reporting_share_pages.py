""" "Share with the patient" on the signed-in pages: the reading side's report page and the
clinic's referral page make a link (shown once, with its QR code), list and withdraw links."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from reporting.models import Report, ShareLink
from reporting.sharing import share_link_resolve

from .ingest_support import media  # noqa: F401
from .reporting_support import desk_make
from .share_support import signed_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(world, media, django_capture_on_commit_callbacks):  # noqa: F811
    return signed_report(world, django_capture_on_commit_callbacks)


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


def _new_url(page: str) -> str:
    match = re.search(r'id="share-url" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def test_the_reader_makes_a_link_with_its_qr_code_shown_once(signed):
    report, sam = signed.report, signed.desk.reading.sam
    client = web(sam)
    edit = client.get(f"/reports/{report.referral_id}/edit/").content.decode()
    assert f'id="report-share" href="/reports/{report.pk}/share/"' in edit
    listed = client.get(f"/reports/{report.pk}/share/")
    assert listed.status_code == 200
    assert 'id="share-url"' not in listed.content.decode()
    made = client.post(f"/reports/{report.pk}/share/")
    assert made.status_code == 200
    page = made.content.decode()
    assert 'id="share-qr" src="data:image/svg+xml;base64,' in page
    url = _new_url(page)
    link = ShareLink.objects.get()
    assert (link.report_id, link.created_by, link.created_for) == (
        report.pk,
        sam,
        signed.desk.world.reader,
    )
    assert share_link_resolve(url.rstrip("/").rsplit("/", 1)[1]) == link
    # The token is not kept: the list never shows a URL again.
    again = client.get(f"/reports/{report.pk}/share/").content.decode()
    assert url not in again
    assert f'data-revoke="{link.pk}"' in again


def test_the_clinic_shares_from_its_referral_page_and_withdraws(signed):
    report, alice = signed.report, signed.desk.world.alice
    client = web(alice)
    referral_page = client.get(f"/referrals/{report.referral_id}/").content.decode()
    assert f'id="report-share" href="/reports/{report.pk}/share/"' in referral_page
    made = client.post(f"/reports/{report.pk}/share/")
    assert made.status_code == 200
    link = ShareLink.objects.get()
    assert link.created_for == signed.desk.world.clinic
    assert f'href="/referrals/{report.referral_id}/"' in made.content.decode()  # back
    withdrawn = client.post(f"/reports/{report.pk}/share/{link.pk}/revoke/")
    assert withdrawn.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert (
        f'data-revoke="{link.pk}"'
        not in client.get(f"/reports/{report.pk}/share/").content.decode()
    )
    # A second withdrawal of a dead link changes nothing; a GET withdraws nothing.
    revoked_at = link.revoked_at
    assert client.post(f"/reports/{report.pk}/share/{link.pk}/revoke/").status_code == 302
    assert client.get(f"/reports/{report.pk}/share/{link.pk}/revoke/").status_code == 405
    link.refresh_from_db()
    assert link.revoked_at == revoked_at


def test_only_final_reports_by_a_party_with_a_sharing_role(
    signed, world, django_capture_on_commit_callbacks
):
    from reporting import services

    report = signed.report
    # The commission sees no report; a link of another report is not this report's.
    assert web(world.carl).get(f"/reports/{report.pk}/share/").status_code == 404
    desk = signed.desk
    draft = services.report_create(
        scope=desk.sam(), referral_id=desk.mr.pk, template_id=desk.mr_knee.pk
    )
    sam = web(desk.reading.sam)
    assert sam.get(f"/reports/{draft.pk}/share/").status_code == 403
    assert sam.post(f"/reports/{draft.pk}/share/").status_code == 403
    assert 'id="report-share"' not in sam.get(f"/reports/{desk.mr.pk}/edit/").content.decode()
    made = sam.post(f"/reports/{report.pk}/share/")
    link = ShareLink.objects.get()
    assert made.status_code == 200
    other = signed.report.pk + 999
    assert not Report.objects.filter(pk=other).exists()
    assert sam.post(f"/reports/{other}/share/{link.pk}/revoke/").status_code == 404
    assert sam.post(f"/reports/{report.pk}/share/999999/revoke/").status_code == 404
    link.refresh_from_db()
    assert link.revoked_at is None
    assert ShareLink.objects.count() == 1


def test_no_button_before_final(world, django_capture_on_commit_callbacks):
    desk = desk_make(world, django_capture_on_commit_callbacks)
    page = web(world.alice).get(f"/referrals/{desk.chest.pk}/").content.decode()
    assert 'id="report-share"' not in page
