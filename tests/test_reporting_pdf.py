"""The report PDF: letterhead, signer, SHA-256, addenda after the original, key images, QR."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from referrals.archive import rendering
from reporting import services
from reporting.models import Report
from reporting.pdf import KEY_IMAGE_OPTIONS, report_pdf_bytes
from tenants.models import AuditEvent

from .conftest import api_client_for
from .ingest_support import media  # noqa: F401
from .share_support import signed_report

pytestmark = pytest.mark.django_db


def _text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def _images(pdf: bytes) -> int:
    reader = PdfReader(io.BytesIO(pdf))
    return sum(len(page.images) for page in reader.pages)


@pytest.fixture
def signed(world, media, django_capture_on_commit_callbacks):  # noqa: F811
    return signed_report(world, django_capture_on_commit_callbacks)


def test_pdf_holds_letterhead_signer_hash_fields_and_key_images(signed):
    report = signed.report
    pictures = [rendering.frame_render(i, 1, KEY_IMAGE_OPTIONS) for i in signed.instances]
    assert len(pictures) == 4
    pdf = report_pdf_bytes(report, key_images=pictures, share_url="https://hub.example/s/x/")
    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    assert "北城中心医院" in text  # the reading hospital's letterhead, in Chinese
    assert "North Central Hospital" in text
    assert "山姆" in text  # sam signed it final (second read)
    assert report.content_sha256 in text.replace("\n", "")
    assert "右上肺 6 mm 实性结节" in text
    assert "建议12个月后复查" in text
    assert "P-9" in text
    # 4 key images plus the QR code's picture.
    assert _images(pdf) >= 4


def test_addendum_follows_the_original_in_the_pdf(signed):
    report = signed.report
    services.addendum_add(
        scope=signed.desk.sam(), report_id=report.pk, text="补充 左肺下叶另见 3 mm 结节。"
    )
    report = Report.objects.get(pk=report.pk)
    text = _text(report_pdf_bytes(report, key_images=[])).replace("\n", "")
    original = text.index("良性表现")
    addendum = text.index("补充 左肺下叶另见 3 mm 结节")
    assert original < addendum
    assert report.content_sha256 in text  # the original's hash is still there


def test_pdf_endpoint_is_audited_and_refuses_drafts(signed):
    client = api_client_for(signed.desk.world.alice)  # the sending clinic reads it
    answer = client.get(f"/api/v1/reports/{signed.report.pk}/pdf/")
    assert answer.status_code == 200, answer.content[:300]
    assert answer["Content-Type"] == "application/pdf"
    assert "北城中心医院" in _text(answer.content)
    assert AuditEvent.objects.filter(event="export", object_id=str(signed.report.pk)).exists()
    # The MR report of the desk is still no final report: no PDF (409), nothing recorded.
    sam = api_client_for(signed.desk.reading.sam)
    draft = services.report_create(
        scope=signed.desk.sam(), referral_id=signed.desk.mr.pk, template_id=signed.desk.mr_knee.pk
    )
    refused = sam.get(f"/api/v1/reports/{draft.pk}/pdf/")
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_final"


def test_one_cjk_face_and_jpeg_key_images_keep_the_pdf_quick(signed):
    """The PDF's cost is mostly subsetting each font face (reporting/pdf.py): one CJK face."""
    report = signed.report
    services.addendum_add(scope=signed.desk.sam(), report_id=report.pk, text="补充 第二页。")
    report = Report.objects.get(pk=report.pk)
    pictures = [rendering.frame_render(i, 1, KEY_IMAGE_OPTIONS) for i in signed.instances]
    assert all(p.startswith(b"\xff\xd8") for p in pictures)  # JPEG
    reader = PdfReader(
        io.BytesIO(
            report_pdf_bytes(report, key_images=pictures, share_url="https://hub.example/s/x/")
        )
    )
    faces = {
        str(font.get_object()["/BaseFont"]).split("+", 1)[1]
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    assert faces == {"Noto-Sans-CJK-SC", "DejaVu-Sans-Mono"}
    embedded = {image.name for page in reader.pages for image in page.images}
    assert len(embedded) == 4
    assert all(name.endswith(".jpg") for name in embedded)  # embedded as rendered (DCT)


def test_the_pdf_fetches_no_file_or_network_url():
    from reporting.pdf import _fetcher

    fetcher = _fetcher([b"\xff\xd8jpeg"])
    assert fetcher.fetch("hub-picture:0").read() == b"\xff\xd8jpeg"
    assert fetcher.fetch("hub-picture:0").content_type == "image/jpeg"
    for url in ("file:///etc/passwd", "http://127.0.0.1/x.png", "https://example.org/x.png"):
        with pytest.raises(ValueError, match="fetches nothing else"):
            fetcher.fetch(url)
