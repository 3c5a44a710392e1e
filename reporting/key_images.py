"""Key images: frames the reader picks in the viewer and attaches to the draft.

Only the author changes them, and only while the report is a draft; once final they are
part of the signed record (a database trigger, migration 0003, refuses any change too).
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from referrals.models import Instance
from tenants.access import Scope, visible

from .models import KeyImage, Report, ReportStatus
from .services import (
    ReportConflictError,
    ReportError,
    ReportForbiddenError,
    ReportNotFoundError,
    _locked,
    _require_reader,
)

MAX_KEY_IMAGES = 24
MAX_NOTE = 300


def _editable(scope: Scope, report_id: Any) -> Report:
    """The report under lock, if the caller is its author and it is still a draft."""
    user = _require_reader(scope)
    report = _locked(scope, report_id)
    if report.status == ReportStatus.FINAL:
        raise ReportConflictError(
            _("This report is final; its key images cannot change."), code="report_final"
        )
    if report.author_id != user.pk:
        raise ReportForbiddenError(
            _("Only the author changes a report's key images."), code="not_author"
        )
    if report.status != ReportStatus.DRAFT:
        raise ReportConflictError(
            _("This report is signed preliminary; its key images cannot change now."),
            code="not_draft",
        )
    return report


def key_image_add(
    *, scope: Scope, report_id: Any, sop_uid: Any, frame: Any = 1, note: Any = ""
) -> KeyImage:
    """Attach one frame of the report's study (the same frame twice is one key image)."""
    if not isinstance(sop_uid, str) or not sop_uid or len(sop_uid) > 64:
        raise ReportError(_("Name the image (its SOP Instance UID)."), code="bad_instance")
    try:
        frame_no = int(frame)
    except (TypeError, ValueError):
        raise ReportError(_("The frame is a number from 1."), code="bad_frame") from None
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ReportError(_("The note is at most 300 characters."), code="bad_note")
    with transaction.atomic():
        report = _editable(scope, report_id)
        instance = (
            visible(scope, Instance).filter(study_id=report.study_id, sop_uid=sop_uid).first()
        )
        if instance is None:
            raise ReportError(
                _("This image is not part of the report's study."), code="bad_instance"
            )
        if not 1 <= frame_no <= instance.number_of_frames:
            raise ReportError(_("This image has no such frame."), code="bad_frame")
        existing = KeyImage.objects.filter(report=report, instance=instance, frame=frame_no).first()
        if existing is not None:
            return existing
        if KeyImage.objects.filter(report=report).count() >= MAX_KEY_IMAGES:
            raise ReportConflictError(_("A report holds at most 24 key images."), code="too_many")
        last = KeyImage.objects.filter(report=report).aggregate(n=Max("order"))["n"]
        try:
            with transaction.atomic():
                return KeyImage.objects.create(
                    report=report,
                    instance=instance,
                    frame=frame_no,
                    note=note.strip(),
                    order=0 if last is None else last + 1,
                )
        except IntegrityError:  # pragma: no cover - the report lock serialises adds
            return KeyImage.objects.get(report=report, instance=instance, frame=frame_no)


def key_image_remove(*, scope: Scope, report_id: Any, key_image_id: Any) -> None:
    with transaction.atomic():
        report = _editable(scope, report_id)
        try:
            pk = int(key_image_id)
        except (TypeError, ValueError):
            raise ReportNotFoundError(_("No such key image."), code="not_found") from None
        deleted, _rows = KeyImage.objects.filter(report=report, pk=pk).delete()
        if not deleted:
            raise ReportNotFoundError(_("No such key image."), code="not_found")


def key_images_of(scope: Scope, report: Report) -> list[KeyImage]:
    return list(
        visible(scope, KeyImage)
        .filter(report=report)
        .select_related("instance__series", "instance__study")
    )


def thumbnail_url(image: KeyImage) -> str:
    instance = image.instance
    return reverse(
        "dicomweb:frame-thumbnail",
        args=[instance.study.study_uid, instance.series.series_uid, instance.sop_uid, image.frame],
    )
