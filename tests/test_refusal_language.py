"""Why the hub refused an instance, in the reader's language.

A refusal keeps its sentence as a translatable text and its values; it is put into words when
someone reads it: Chinese on the clinic's Chinese upload page, English for a program that
names no language. The Chinese catalog is compiled from the lead's merge of the msgids, so
these tests give the running process the few Chinese sentences they read.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from django.test import Client
from django.utils import translation
from django.utils.translation import trans_real
from knox.models import AuthToken
from playwright.sync_api import expect

from referrals.archive.dicom_checks import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH,
    Refusal,
    size_check,
    uid_check,
)
from referrals.archive.synthetic import ct_slice, to_bytes

from . import test_browser as shared
from .dicom_support import PATIENT, ct_files, multipart_related
from .test_browser import sign_in

_orm_beside_playwright = shared._orm_beside_playwright
browser = shared.browser
new_page = shared.new_page

TOO_SHORT = "The file is too short to be a DICOM file."
MISSING = "%(name)s is missing."
META_DIFFERS = "The file meta SOP Instance UID differs from the data set's."
CHINESE = {
    TOO_SHORT: "文件太短，不是 DICOM 文件。",  # noqa: RUF001 - Chinese punctuation
    MISSING: "缺少 %(name)s。",
    META_DIFFERS: "文件元信息中的 SOP 实例 UID 与数据集中的不一致。",
}


@pytest.fixture
def chinese_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zh-hans catalog of this process, holding the sentences these tests read."""
    catalog = trans_real.translation("zh-hans")
    original = catalog.gettext
    monkeypatch.setattr(catalog, "gettext", lambda text: CHINESE.get(text) or original(text))


def test_a_refusal_is_worded_when_read(chinese_catalog):
    with translation.override("zh-hans"):
        with pytest.raises(Refusal) as caught:
            size_check(10)
        with pytest.raises(Refusal) as missing:
            uid_check("", "SOP Instance UID")
    assert caught.value.reason == CANNOT_UNDERSTAND
    assert missing.value.reason == DATASET_DOES_NOT_MATCH
    # Raised under Chinese, read under English: the reader's language wins.
    with translation.override("en"):
        assert caught.value.message == TOO_SHORT
        assert missing.value.message == "SOP Instance UID is missing."
        assert str(missing.value) == "SOP Instance UID is missing. (0xA900)"
    with translation.override("zh-hans"):
        assert caught.value.message == CHINESE[TOO_SHORT]
        assert missing.value.message == "缺少 SOP Instance UID。"


def _stow(client: Client, parts: list[bytes]):
    body, content_type = multipart_related(parts)
    return client.post(
        "/dicomweb/studies",
        data=body,
        content_type=content_type,
        HTTP_ACCEPT="application/dicom+json",
    )


def _reasons(response) -> list[str]:
    assert response.status_code in (200, 202, 409), response.content
    return [item["00091001"]["Value"][0] for item in response.json()["00081198"]["Value"]]


def _without_sop_uid() -> bytes:
    ds = pydicom.dcmread(io.BytesIO(ct_files(1)[0]))
    del ds.SOPInstanceUID
    return to_bytes(ds)


@pytest.mark.django_db
def test_stow_refusals_in_english_for_a_program_chinese_when_asked(world, chinese_catalog):
    _instance, key = AuthToken.objects.create(user=world.alice)
    parts = [b"hello", _without_sop_uid()]
    program = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert _reasons(_stow(program, parts)) == [TOO_SHORT, "SOP Instance UID is missing."]
    person = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert _reasons(_stow(person, parts)) == [CHINESE[TOO_SHORT], "缺少 SOP Instance UID。"]


@pytest.mark.browser
def test_the_chinese_upload_page_shows_the_hubs_words_in_chinese(
    world, live_server, new_page, chinese_catalog, tmp_path: Path
):
    # Reads fine in the browser, but its file meta names another instance than its data set
    # does: only the hub finds that, and the page shows the hub's sentence.
    odd = ct_slice(
        patient=PATIENT,
        study_uid="1.2.826.0.1.3680043.10.1342.77",
        size=64,
        series_uid="1.2.826.0.1.3680043.10.1342.78",
        index=0,
        count=1,
    )
    uid = str(odd.SOPInstanceUID).encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "odd.dcm").write_bytes(to_bytes(odd).replace(uid, other, 1))
    page = new_page()  # a Chinese browser
    sign_in(page, live_server.url, world.alice)
    page.goto(f"{live_server.url}/studies/upload/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.set_input_files("#upload-folder", str(folder))
    expect(page.locator("#upload")).to_have_attribute("data-phase", "ready")
    page.click("#upload-send")
    # Nothing stored: the page ends "refused", the hub's words under the file.
    expect(page.locator("#upload")).to_have_attribute("data-phase", "refused", timeout=30_000)
    expect(page.locator("#upload-studies .files .detail")).to_contain_text(CHINESE[META_DIFFERS])
