"""Patient share links: made once, opened without login, expiring, revocable, rate-limited,
every opening recorded, and no access beyond the one report and study they name."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from reporting.models import ShareLink, ShareLinkOpening
from tenants.models import AuditEvent

from .conftest import api_client_for
from .ingest_support import media  # noqa: F401
from .share_support import signed_mr_same_patient, signed_report, stored_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(world, media, django_capture_on_commit_callbacks, settings):  # noqa: F811
    cache.clear()  # rate-limit counters of earlier tests (this Redis db is this suite's)
    settings.HUB_SHARE_RATE_IP = "1000/m"
    return signed_report(world, django_capture_on_commit_callbacks)


def _share(signed, user=None, **body):
    client = api_client_for(user or signed.tech)
    answer = client.post(f"/api/v1/reports/{signed.report.pk}/share-links/", body, format="json")
    assert answer.status_code == 201, answer.content
    data = answer.json()
    token = data["url"].rstrip("/").rsplit("/", 1)[1]
    return data, token


def phone(address: str = "10.1.1.1") -> Client:
    return Client(
        REMOTE_ADDR=address, HTTP_USER_AGENT="Mozilla/5.0 (iPhone)", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )


def test_the_clinic_makes_a_link_whose_token_is_stored_only_as_a_hash(signed):
    data, token = _share(signed, days=7)
    link = ShareLink.objects.get(pk=data["id"])
    assert link.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    stored = " ".join(str(v) for v in ShareLink.objects.filter(pk=link.pk).values().get().values())
    assert token not in stored
    assert link.expires_at - link.created_at == dt.timedelta(days=7)
    assert data["qr_svg"].startswith("data:image/svg+xml;base64,")
    assert (
        "token"
        not in api_client_for(signed.tech)
        .get(f"/api/v1/reports/{signed.report.pk}/share-links/")
        .content.decode()
    )


def test_default_lifetime_is_the_setting(signed, settings):
    settings.HUB_SHARE_LINK_DAYS = 3
    data, _token = _share(signed, user=signed.desk.reading.sam)  # the reading side may too
    link = ShareLink.objects.get(pk=data["id"])
    assert link.expires_at - link.created_at == dt.timedelta(days=3)


def test_opening_shows_the_report_and_records_every_opening(signed):
    data, token = _share(signed)
    for n in (1, 2):
        page = phone().get(f"/s/{token}/")
        assert page.status_code == 200
        body = page.content.decode()
        assert "右上肺 6 mm 实性结节" in body
        assert "北城中心医院" in body
        assert page["Referrer-Policy"] == "no-referrer"
        assert ShareLinkOpening.objects.filter(link_id=data["id"]).count() == n
    link = ShareLink.objects.get(pk=data["id"])
    assert link.open_count == 2
    opening = ShareLinkOpening.objects.filter(link=link).first()
    assert opening.source_address == "10.1.1.1"
    assert AuditEvent.objects.filter(event="share_link_opened", object_id=str(link.pk)).count() == 2
    pdf = phone().get(f"/s/{token}/pdf/")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"


def test_expired_link_is_gone_and_changes_nothing(signed):
    data, token = _share(signed, days=1)
    with freeze_time(timezone.now() + dt.timedelta(days=1, seconds=1)):
        page = phone().get(f"/s/{token}/")
    assert page.status_code == 410
    assert "expired" in page.content.decode() or "过期" in page.content.decode()
    assert "右上肺" not in page.content.decode()
    link = ShareLink.objects.get(pk=data["id"])
    assert link.open_count == 0
    assert not ShareLinkOpening.objects.exists()


def test_revoked_link_is_gone_at_once(signed):
    data, token = _share(signed)
    assert phone().get(f"/s/{token}/").status_code == 200
    revoke = api_client_for(signed.desk.reading.sam).post(
        f"/api/v1/reports/{signed.report.pk}/share-links/{data['id']}/revoke/"
    )
    assert revoke.status_code == 200
    assert revoke.json()["revoked_at"]
    for path in (f"/s/{token}/", f"/s/{token}/all/", f"/s/{token}/pdf/"):
        assert phone().get(path).status_code == 410, path
    assert ShareLink.objects.get(pk=data["id"]).open_count == 1


def test_tampered_token_is_not_found(signed):
    data, token = _share(signed)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token[:-1], token + "x", "not-a-token"):
        page = phone().get(f"/s/{bad}/")
        assert page.status_code == 404, bad
        assert "右上肺" not in page.content.decode()
    assert ShareLink.objects.get(pk=data["id"]).open_count == 0


def test_rate_limited_per_link_and_per_address(signed, settings):
    _data, token = _share(signed)
    settings.HUB_SHARE_RATE_LINK = "3/m"
    codes = [phone(f"10.2.0.{n}").get(f"/s/{token}/").status_code for n in range(5)]
    assert codes == [200, 200, 200, 429, 429]  # other addresses, the same link
    settings.HUB_SHARE_RATE_LINK = "1000/m"
    settings.HUB_SHARE_RATE_IP = "2/m"
    codes = [phone("10.3.0.1").get(f"/s/{token}/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    # Guessing tokens from one address is limited the same way.
    assert phone("10.3.0.1").get("/s/" + "x" * 43 + "/").status_code == 429


def _viewer_base(body: str) -> str:
    return re.search(r'href="(/s/v/[^"]+/)"', body).group(1).rstrip("/")


def test_viewer_and_images_reach_only_the_links_study(signed, world, settings):
    _data, token = _share(signed)
    body = phone().get(f"/s/{token}/").content.decode()
    base = _viewer_base(body)
    viewer = phone().get(base + "/")
    assert viewer.status_code == 200
    assert signed.instances[0].sop_uid in viewer.content.decode()
    mine = signed.instances[0]
    frame = f"/series/{mine.series.series_uid}/instances/{mine.sop_uid}/frames/1/rendered"
    image = phone().get(base + frame)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/jpeg"
    # Another stored study of the same clinic (same patient even): not through this grant.
    other = stored_study_other(world)
    theirs = other.instances.first()
    path = f"/series/{theirs.series.series_uid}/instances/{theirs.sop_uid}/frames/1/rendered"
    assert phone().get(base + path).status_code == 404
    # A grant edited to name another link or study fails its signature.
    assert phone().get(base[:-2] + "xx" + frame).status_code == 404
    # The grant ends after its minutes, and with the link.
    with freeze_time(
        timezone.now() + dt.timedelta(minutes=settings.HUB_SHARE_VIEWER_MINUTES, seconds=5)
    ):
        assert phone().get(base + frame).status_code == 404
    ShareLink.objects.update(revoked_at=timezone.now())
    assert phone().get(base + frame).status_code == 404
    # The signed-in archive stays closed to the phone.
    study_url = f"/dicomweb/studies/{signed.study.study_uid}/metadata"
    assert phone().get(study_url).status_code in (401, 403)


def stored_study_other(world):
    from referrals.archive.synthetic import SyntheticPatient

    return stored_study(world, count=1, patient=SyntheticPatient("P-10", "Li^Lei=李^雷"))


def test_patient_page_lists_the_patients_shared_studies_only(
    signed, django_capture_on_commit_callbacks
):
    mr = signed_mr_same_patient(signed, django_capture_on_commit_callbacks)
    _data, token = _share(signed)
    api_client_for(signed.desk.reading.sam).post(
        f"/api/v1/reports/{mr.pk}/share-links/", {}, format="json"
    )
    page = phone().get(f"/s/{token}/")
    assert 'id="all-link"' in page.content.decode()
    listing = phone().get(f"/s/{token}/all/").content.decode()
    assert "右上肺 6 mm 实性结节" in listing
    assert "内侧半月板后角撕裂" in listing
    # Revoking the MR link takes it off the list; the chest report stays.
    ShareLink.objects.filter(report=mr).update(revoked_at=timezone.now())
    listing = phone().get(f"/s/{token}/all/").content.decode()
    assert "内侧半月板后角撕裂" not in listing
    assert "右上肺 6 mm 实性结节" in listing


def test_only_final_reports_by_parties_with_a_sharing_role(signed):
    desk = signed.desk
    alice = api_client_for(desk.world.alice)  # referring physician? any clinical role
    draft_like = desk.chest  # the desk's own chest referral has no final report
    assert draft_like.pk != signed.report.referral_id
    ada = api_client_for(desk.ada)  # an alliance admin sees it but is no party with a role
    answer = ada.post(f"/api/v1/reports/{signed.report.pk}/share-links/", {}, format="json")
    assert answer.status_code == 403
    bad = alice.post(f"/api/v1/reports/{signed.report.pk}/share-links/", {"days": 0}, format="json")
    assert bad.status_code == 400
    assert not ShareLink.objects.exists()
