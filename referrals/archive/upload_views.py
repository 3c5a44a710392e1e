"""The browser upload page: a clinic without a gateway sends a folder of DICOM files.

The page does the work in the browser (referrals/static/referrals/upload.js): it reads each
file's header with dicom-parser, groups files by study, asks /api/v1/uploads/check/ what
the hub already holds and sends the rest by STOW-RS. This view only checks the caller may
send and hands the page its settings and its words in the caller's language.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from referrals.archive.upload import UPLOAD_BATCH_BYTES, UPLOAD_BATCH_FILES, UPLOAD_CHECK_MAX
from tenants.roles import UPLOAD_ROLES


def upload_strings() -> dict[str, Any]:
    """What upload.js says, translated here so the one django.po catalog holds it all.

    Placeholders are %(name)s, filled in by the page.
    """
    return {
        "reading": _("Reading files: %(done)s / %(total)s"),
        "ready": _("Ready to send. Files: %(files)s · studies: %(studies)s"),
        "nothingToSend": _("No DICOM files to send."),
        "hashing": _("Preparing files: %(done)s / %(total)s"),
        "checking": _("Asking the hub which files it already has…"),
        "sending": _("Sending files: %(done)s / %(total)s"),
        "lost": _("Connection lost. Files the hub already received will not be sent again."),
        "retryIn": _("Trying again in %(seconds)s s, or press Continue."),
        "stopped": _(
            "The hub stopped the upload: your session may have ended. Sign in again in "
            "another tab, then press Continue."
        ),
        "done": _(
            "Done. Stored: %(stored)s · already on the hub: %(present)s · refused: %(refused)s"
        ),
        "nothingStored": _(
            "Nothing was stored: the hub refused all %(refused)s file(s). The reason is shown "
            "under each study; fix the files or ask your administrator, then send them again."
        ),
        "doneWithRefusals": _(
            "Done, but %(refused)s file(s) were refused (the reasons are under each study). "
            "Stored: %(stored)s · already on the hub: %(present)s"
        ),
        "busy": _("Wait until the current files are read or sent."),
        "studyFiles": _("Files: %(files)s · %(size)s"),
        "studyCounts": _(
            "Stored: %(stored)s · already on the hub: %(present)s · refused: %(refused)s"
        ),
        "noPatientName": _("(no patient name)"),
        "tooShort": _("Not a DICOM file: it is too short."),
        "notDicom": _("Not a DICOM image (a document, a picture or another kind of file)."),
        "unreadable": _("This DICOM file cannot be read: it may be damaged."),
        "readError": _(
            "The browser could not read this file: it may have been moved or deleted "
            "since it was chosen."
        ),
        "dicomdir": _("A DICOMDIR index, not an image: it is not needed."),
        "noStudyUid": _("The file has no Study Instance UID."),
        "noSopUid": _("The file has no SOP Instance UID."),
        "badStudyUid": _(
            "The Study Instance UID is not a valid DICOM UID: the hub would refuse the file."
        ),
        "badSopUid": _(
            "The SOP Instance UID is not a valid DICOM UID: the hub would refuse the file."
        ),
        "sameFileTwice": _("The same file is in the selection twice: it is sent once."),
        "sameUidOtherContent": _(
            "Another file in the selection has the same SOP Instance UID but different content."
        ),
        "conflict": _(
            "The hub already holds a different file with this SOP Instance UID; "
            "the stored copy is kept."
        ),
        "held": _(
            "The hub holds this file for review: its patient differs from the patient of the "
            "study it names. Your site's administrator decides; do not send it again."
        ),
        "noAnswer": _("The hub did not answer for this file."),
        "requestRefused": _(
            "The hub refused these files (error %(status)s). Send them again later; if it "
            "keeps happening, tell your administrator."
        ),
        "hubSaid": _("The hub's words: %(words)s"),
        "refusedOther": _(
            "The hub refused this file. Tell your administrator, with the file's name."
        ),
        "vendorMissing": _(
            "The page's DICOM reader (dicom-parser) did not load: the "
            "server's front-end packages are not installed. Ask your "
            "administrator to install them (npm ci)."
        ),
        "insecure": _("This page needs a secure (HTTPS) connection to check files."),
        "reasons": {
            # PS3.4 Annex B / PS3.18 failure reasons the hub sends
            # (referrals/archive/dicom_checks.py).
            "0110": _(
                "The hub could not store this file. Send it again later; if it keeps "
                "happening, tell your administrator."
            ),
            "0111": _(
                "The hub already holds a different file with this SOP Instance UID; "
                "the stored copy is kept."
            ),
            "0122": _("The hub does not take this kind of DICOM object (it is not an image)."),
            "A700": _(
                "The hub has no room for this file now. Send it again later; if it keeps "
                "happening, tell your administrator."
            ),
            "A900": _(
                "The file lacks details the hub needs (such as the patient or study "
                "identifiers): check how the modality exports it."
            ),
            "C000": _("The hub could not read this file: it may be damaged or not DICOM."),
            "C001": _("The file is larger than the hub accepts."),
            "C002": _(
                "The hub holds this file for review: its patient differs from the patient of "
                "the study it names. Your site's administrator decides; do not send it again."
            ),
        },
    }


@login_required
def study_upload(request: HttpRequest) -> HttpResponse:
    scope = request.hub_scope  # type: ignore[attr-defined]
    if not scope.has_any_role(*UPLOAD_ROLES):
        raise PermissionDenied
    config = {
        "checkUrl": reverse("api:upload-check"),
        "stowUrl": reverse("dicomweb:studies"),
        "institution": scope.institution.pk,
        "checkMax": UPLOAD_CHECK_MAX,
        "batchFiles": UPLOAD_BATCH_FILES,
        "batchBytes": UPLOAD_BATCH_BYTES,
    }
    return render(
        request,
        "referrals/upload.html",
        {
            "config": config,
            "strings": upload_strings(),
            "institution": scope.institution,
        },
    )
