"""The upload page in a real browser: a folder in, studies grouped, progress, refusals, and
a dropped connection continued without sending anything twice.

Drives Debian's Chromium through Playwright against pytest-django's live server, with the
fixtures of tests/test_browser.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from referrals.archive.synthetic import SyntheticPatient, ct_series, ct_slice, to_bytes
from referrals.models import Instance
from tenants.audit import AuditCode
from tenants.models import AuditEvent

from . import test_browser as shared
from .test_browser import PHONE, no_horizontal_overflow, sign_in

# The browser fixtures of tests/test_browser.py, found by pytest under these names.
_orm_beside_playwright = shared._orm_beside_playwright
browser = shared.browser
new_page = shared.new_page

pytestmark = pytest.mark.browser

WANG = SyntheticPatient("P0001", "Wang^Xiaoming=王^小明")
LI = SyntheticPatient("P0002", "Li^Hua=李^华", birth_date="19720301", sex="F")
PER_STUDY = 6  # more than one STOW batch (4 files) per study
SEND_TIMEOUT_MS = 30_000


def write_study(folder: Path, patient: SyntheticPatient, count: int = PER_STUDY) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    uids = []
    for index, ds in enumerate(ct_series(patient=patient, count=count, size=64)):
        (folder / f"IM{index + 1:04d}").write_bytes(to_bytes(ds))
        uids.append(str(ds.SOPInstanceUID))
    return uids


def clinic_folder(root: Path) -> Path:
    """Two studies in sub-folders, as a CD or a modality's export lays them out."""
    folder = root / "export"
    write_study(folder / "wang" / "CT1", WANG)
    write_study(folder / "li", LI)
    return folder


def open_upload(page: Page, base_url: str, user) -> list[str]:
    """Sign in and open the page; the returned list collects the page's script errors."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, base_url, user)
    page.goto(f"{base_url}/studies/upload/")
    return errors


def choose_folder(page: Page, folder: Path) -> None:
    page.set_input_files("#upload-folder", str(folder))
    expect(page.locator("#upload")).to_have_attribute("data-phase", "ready")


def stored_audit_counts() -> tuple[int, int]:
    events = AuditEvent.objects.filter(event=AuditCode.INSTANCES_STORED)
    return (sum(e.detail["stored"] for e in events), sum(e.detail["duplicate"] for e in events))


def test_a_folder_is_grouped_by_study_sent_and_refusals_shown(
    world, live_server, new_page, tmp_path: Path
):
    folder = clinic_folder(tmp_path)
    (folder / "notes.txt").write_text("Scanned on the CT in room 2, please read urgently.\n" * 4)
    # Reads fine in the browser, but its file meta names another instance than its data
    # set does: only the hub's checks find that, and its answer is shown.
    odd = ct_slice(
        patient=WANG,
        study_uid="1.2.826.0.1.3680043.10.1342.77",
        size=64,
        series_uid="1.2.826.0.1.3680043.10.1342.78",
        index=0,
        count=1,
    )
    uid = str(odd.SOPInstanceUID).encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    (folder / "odd.dcm").write_bytes(to_bytes(odd).replace(uid, other, 1))  # the meta's copy
    # A UID with a leading zero (PS3.5 9.1 forbids it; some old modalities write it) is
    # refused by the page itself, before anything is sent.
    bad = ct_slice(
        patient=WANG,
        study_uid="1.2.826.0.1.3680043.10.1342.77",
        size=64,
        series_uid="1.2.826.0.1.3680043.10.1342.78",
        index=1,
        count=1,
    )
    with warnings.catch_warnings():  # pydicom, too, finds the UID invalid, and says so
        warnings.simplefilter("ignore", UserWarning)
        bad.SOPInstanceUID = bad.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.079"
        (folder / "zz-bad-uid.dcm").write_bytes(to_bytes(bad))

    page = new_page(locale="en-US")
    script_errors = open_upload(page, live_server.url, world.alice)
    expect(page.locator("nav.mainnav a[href='/studies/upload/']")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("nav.mainnav a[href='/studies/']")).not_to_have_attribute(
        "aria-current", "page"
    )
    choose_folder(page, folder)

    studies = page.locator("#upload-studies > li")
    expect(studies).to_have_count(3)
    wang = studies.filter(has_text="王 小明").filter(has_text="Files: 6")
    li = studies.filter(has_text="Li Hua")
    expect(wang.locator(".patient")).to_have_text("Wang Xiaoming / 王 小明")
    expect(wang.locator(".study-meta")).to_contain_text("P0001")
    expect(wang.locator(".study-meta")).to_contain_text("CT")
    expect(li.locator(".counts").first).to_contain_text("Files: 6 ·")
    rejected = page.locator("#upload-rejected li")
    expect(rejected).to_have_count(2)
    expect(rejected.filter(has_text="export/notes.txt")).to_contain_text(
        "Not a DICOM image (a document, a picture or another kind of file)."
    )
    expect(rejected.filter(has_text="export/zz-bad-uid.dcm")).to_contain_text(
        "The SOP Instance UID is not a valid DICOM UID"
    )
    expect(page.locator("#upload-status")).to_have_text("Ready to send. Files: 13 · studies: 3")

    page.click("#upload-send")
    expect(page.locator("#upload")).to_have_attribute("data-phase", "done", timeout=SEND_TIMEOUT_MS)
    expect(page.locator("#upload-status")).to_have_text(
        "Done, but 1 file(s) were refused (the reasons are under each study). "
        "Stored: 12 · already on the hub: 0"
    )
    for study in (wang, li):
        expect(study.locator("progress")).to_have_attribute("value", "100")
        expect(study.locator(".pct")).to_have_text("100 %")
        expect(study.locator(".result")).to_have_text(
            "Stored: 6 · already on the hub: 0 · refused: 0"
        )
    odd_study = studies.filter(has_text="odd.dcm")
    expect(odd_study.locator(".files li")).to_have_count(1)
    # The reason reads as a sentence for the technician; the hub's own words follow apart.
    expect(odd_study.locator(".files .reason")).to_have_text(
        "The file lacks details the hub needs (such as the patient or study identifiers): "
        "check how the modality exports it."
    )
    expect(odd_study.locator(".files .detail")).to_have_text(
        "The hub's words: The file meta SOP Instance UID differs from the data set's."
    )
    page.screenshot(path=str(tmp_path / "upload-desktop.png"), full_page=True)

    assert Instance.objects.filter(institution=world.clinic).count() == 12
    assert not Instance.objects.filter(sop_uid=str(odd.SOPInstanceUID)).exists()
    assert stored_audit_counts() == (12, 0)
    assert script_errors == []


def test_after_a_dropped_connection_continue_sends_only_what_is_missing(
    world, live_server, new_page, tmp_path: Path
):
    folder = clinic_folder(tmp_path)
    page = new_page(locale="en-US")
    script_errors = open_upload(page, live_server.url, world.alice)
    choose_folder(page, folder)

    stow_calls: list[str] = []

    def drop_the_line(route: Route) -> None:
        stow_calls.append(route.request.url)
        if len(stow_calls) == 1:
            route.continue_()
        elif len(stow_calls) == 2:
            # The hub receives and stores the batch, but its answer never comes back: the
            # worst case for a resend, since the page cannot know what arrived.
            route.fetch()
            route.abort("connectionreset")
        else:
            route.fulfill(status=503, body="hub unavailable")

    page.route("**/dicomweb/studies/**", drop_the_line)
    page.click("#upload-send")
    expect(page.locator("#upload")).to_have_attribute("data-phase", "lost", timeout=SEND_TIMEOUT_MS)
    expect(page.locator("#upload-status")).to_contain_text("Connection lost")
    expect(page.locator("#upload-continue")).to_be_visible()
    assert Instance.objects.count() == 6  # batch 1 (4) and batch 2 (2) reached the hub
    page.screenshot(path=str(tmp_path / "upload-lost.png"), full_page=True)

    page.unroute("**/dicomweb/studies/**")
    sent_after: list[str] = []
    page.on("request", lambda r: sent_after.append(r.url) if "/dicomweb/" in r.url else None)
    page.click("#upload-continue")
    expect(page.locator("#upload")).to_have_attribute("data-phase", "done", timeout=SEND_TIMEOUT_MS)
    # The two files whose answer was lost were found on the hub and not sent again.
    expect(page.locator("#upload-status")).to_have_text(
        "Done. Stored: 10 · already on the hub: 2 · refused: 0"
    )
    for progress in page.locator("#upload-studies progress").all():
        expect(progress).to_have_attribute("value", "100")

    assert Instance.objects.filter(institution=world.clinic).count() == 2 * PER_STUDY
    assert stored_audit_counts() == (2 * PER_STUDY, 0)  # every file stored once, none twice
    assert len(sent_after) == 2  # the other study's two batches, nothing of the first one
    assert script_errors == []


# A folder dropped from the desktop arrives as FileSystemEntry objects; Playwright cannot
# drag from the desktop, so the page is given entries shaped as the File and Directory
# Entries API gives them (a directory answers readEntries in chunks, then with none).
DROP_FOLDER = """
(files) => {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const fileEntry = (path, b64) => ({
    isFile: true, isDirectory: false, fullPath: path,
    file: (ok) => ok(new File([bytes(b64)], path.split("/").pop())),
  });
  const dirEntry = (path, children) => ({
    isFile: false, isDirectory: true, fullPath: path,
    createReader: () => {
      let next = 0;
      return { readEntries: (ok) => {
        const chunk = children.slice(next, next + 2);
        next += 2;
        setTimeout(() => ok(chunk), 0);
      } };
    },
  });
  const entries = (dir, list) => list.map(([name, b64]) => fileEntry(dir + "/" + name, b64));
  const deeper = dirEntry("/scan/series2", entries("/scan/series2", files.slice(3)));
  const top = dirEntry("/scan", [...entries("/scan", files.slice(0, 3)), deeper]);
  const transfer = new DataTransfer();
  transfer.items.add(new File(["x"], "scan"));
  Object.defineProperty(DataTransferItem.prototype, "webkitGetAsEntry", { value: () => top });
  document.getElementById("upload-drop").dispatchEvent(
    new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
}
"""


def test_a_dropped_folder_is_walked_to_the_last_file(world, live_server, new_page):
    import base64

    datasets = list(ct_series(patient=WANG, count=5, size=64))
    # A long header: a 200 KB private block before the Study Instance UID, past the first
    # slice the page reads, so it has to read further.
    block = datasets[2].private_block(0x0019, "SCANNER VENDOR", create=True)
    block.add_new(0x01, "OB", bytes(200_000))
    parts = [to_bytes(ds) for ds in datasets]
    files = [[f"IM{i}", base64.b64encode(p).decode()] for i, p in enumerate(parts)]
    files.insert(1, ["DICOMDIR.txt", base64.b64encode(b"index " * 40).decode()])
    page = new_page(locale="en-US")
    open_upload(page, live_server.url, world.alice)
    page.evaluate(DROP_FOLDER, files)
    expect(page.locator("#upload")).to_have_attribute("data-phase", "ready")
    expect(page.locator("#upload-studies > li")).to_have_count(1)
    expect(page.locator("#upload-studies .counts").first).to_contain_text("Files: 5 ·")
    expect(page.locator("#upload-rejected li")).to_have_text(
        ["scan/DICOMDIR.txtNot a DICOM image (a document, a picture or another kind of file)."]
    )
    page.click("#upload-send")
    expect(page.locator("#upload")).to_have_attribute("data-phase", "done", timeout=SEND_TIMEOUT_MS)
    assert Instance.objects.filter(institution=world.clinic).count() == 5


def test_a_batch_the_hub_refused_entirely_says_nothing_was_stored(
    world, live_server, new_page, tmp_path: Path
):
    # Every file's meta names another SOP Instance UID than its data set: the page cannot
    # tell, the hub refuses each (0xA900). The end must say nothing was stored, not "Done".
    folder = tmp_path / "mismatch"
    folder.mkdir()
    for n, ds in enumerate(ct_series(patient=WANG, count=3, size=32)):
        uid = str(ds.SOPInstanceUID).encode()
        other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
        (folder / f"IM{n}.dcm").write_bytes(to_bytes(ds).replace(uid, other, 1))
    page = new_page(locale="en-US")
    open_upload(page, live_server.url, world.alice)
    page.set_input_files("#upload-files", [str(p) for p in sorted(folder.iterdir())])
    expect(page.locator("#upload")).to_have_attribute("data-phase", "ready")
    page.click("#upload-send")
    expect(page.locator("#upload")).to_have_attribute(
        "data-phase", "refused", timeout=SEND_TIMEOUT_MS
    )
    expect(page.locator("#upload-status")).to_have_text(
        "Nothing was stored: the hub refused all 3 file(s). The reason is shown under each "
        "study; fix the files or ask your administrator, then send them again."
    )
    # The study's bar does not turn green either, and each file says why in a sentence.
    expect(page.locator("#upload-studies > li")).to_have_attribute("data-state", "refused")
    expect(page.locator("#upload-studies .files .reason")).to_have_count(3)
    for reason in page.locator("#upload-studies .files .reason").all_inner_texts():
        assert reason.startswith("The file lacks details the hub needs"), reason
    status_colour = page.locator("#upload-status").evaluate("e => getComputedStyle(e).color")
    assert status_colour == "rgb(179, 38, 30)"  # --bad, not --ok's green
    assert not Instance.objects.filter(institution=world.clinic).exists()


def test_a_missing_parser_says_so(world, live_server, new_page):
    page = new_page(locale="en-US")
    sign_in(page, live_server.url, world.alice)
    page.route("**/static/vendor/dicom-parser/**", lambda route: route.fulfill(status=404))
    page.goto(f"{live_server.url}/studies/upload/")
    expect(page.locator("#upload-error")).to_contain_text("dicom-parser")
    expect(page.locator("#upload-folder")).to_be_disabled()


def test_the_page_on_a_phone_in_chinese(world, live_server, new_page, tmp_path: Path):
    folder = clinic_folder(tmp_path)
    (folder / "readme.txt").write_text("x")
    page = new_page(**PHONE)
    open_upload(page, live_server.url, world.alice)
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    page.set_input_files(
        "#upload-files", [str(p) for p in sorted(folder.rglob("*")) if p.is_file()]
    )
    expect(page.locator("#upload")).to_have_attribute("data-phase", "ready")
    page.locator("#upload-send").tap()
    expect(page.locator("#upload")).to_have_attribute("data-phase", "done", timeout=SEND_TIMEOUT_MS)
    expect(page.locator("#upload-studies > li")).to_have_count(2)
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(tmp_path / "upload-phone.png"), full_page=True)
    assert Instance.objects.filter(institution=world.clinic).count() == 2 * PER_STUDY
