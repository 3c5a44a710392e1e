"""The patient's pages, opened from a share link on a phone without logging in.

`/s/<token>/` shows the report, its addenda and key images; `/s/<token>/all/` the same
patient's other shared studies in the alliance; `/s/<token>/pdf/` the printable report.
Images (key images and the viewer) come from `/s/v/<grant>/...`, where the grant is a
signed, short-lived value naming one link and its study (reporting/sharing.py).
Every page is rate-limited per IP and per link (django-ratelimit on the default cache);
an unknown or tampered token is a 404 page, an expired or revoked one a 410 page, and
neither changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET
from django_ratelimit.core import is_ratelimited

from referrals.archive import rendering
from referrals.archive.person_names import dicom_person_name
from referrals.archive.viewer import viewer_data, viewer_strings
from tenants.audit import AuditCode, audit_record
from tenants.models import AuditEvent

from . import pdf, sharing
from .models import ShareLink

KEY_IMAGE_QUERY = "viewport=512,512"


def _limited(
    request: HttpRequest, group: str, rate: str, key: str | Callable[[str, HttpRequest], str]
) -> bool:
    return bool(is_ratelimited(request, group=group, key=key, rate=rate, increment=True))


def _protect(response: HttpResponse) -> HttpResponse:
    # The token is in the URL: no referrer may carry it away, no cache or index keep it.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _refusal(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    response = render(
        request, "reporting/share_error.html", {"title": title, "message": message}, status=status
    )
    return _protect(response)


def _too_many(request: HttpRequest) -> HttpResponse:
    return _refusal(
        request,
        429,
        _("Too many requests"),
        _("This link was opened too often in a short time. Wait a minute and try again."),
    )


def _open(request: HttpRequest, token: str, *, page: str) -> ShareLink | HttpResponse:
    """The live link of `token`, its opening recorded; or the page that says why not."""
    if _limited(request, "share-ip", settings.HUB_SHARE_RATE_IP, "ip"):
        return _too_many(request)
    try:
        link = sharing.share_link_resolve(token)
    except sharing.ShareLinkNotFoundError:
        return _refusal(
            request,
            404,
            _("Link not found"),
            _(
                "This link is not valid. Check that it was copied whole, or ask the "
                "hospital for a new one."
            ),
        )
    except sharing.ShareLinkGoneError as exc:
        return _refusal(
            request,
            410,
            _("Link no longer available"),
            f"{exc} " + _("Ask the hospital for a new link if you still need it."),
        )
    if _limited(
        request, "share-link", settings.HUB_SHARE_RATE_LINK, lambda _g, _r: f"link{link.pk}"
    ):
        return _too_many(request)
    sharing.share_link_opened(link, request, page=page)
    return link


def _key_images(link: ShareLink, base: str) -> list[dict[str, Any]]:
    rows = link.report.key_images.select_related("instance__series")
    return [
        {
            "url": f"{base}/series/{k.instance.series.series_uid}/instances/"
            f"{k.instance.sop_uid}/frames/{k.frame}/rendered?{KEY_IMAGE_QUERY}",
            "note": k.note,
        }
        for k in rows
    ]


def _shown(link: ShareLink) -> dict[str, Any]:
    """What a page shows of one link: the report, its addenda, key images, viewer link."""
    grant = sharing.viewer_grant(link)
    base = reverse("share-viewer", args=[grant]).rstrip("/")
    report = link.report
    return {
        "link": link,
        "report": report,
        "study": report.study,
        "doc": pdf.report_document(report),
        "key_images": _key_images(link, base),
        "viewer_url": reverse("share-viewer", args=[grant]),
        "patient_name": dicom_person_name(report.study.patient_name),
    }


@require_GET
def share_page(request: HttpRequest, token: str) -> HttpResponse:
    link = _open(request, token, page="report")
    if isinstance(link, HttpResponse):
        return link
    others = sharing.patient_links(link).exclude(pk=link.pk).count()
    return _protect(
        render(request, "reporting/share.html", {**_shown(link), "token": token, "others": others})
    )


@require_GET
def share_patient(request: HttpRequest, token: str) -> HttpResponse:
    link = _open(request, token, page="patient")
    if isinstance(link, HttpResponse):
        return link
    return _protect(
        render(
            request,
            "reporting/share_patient.html",
            {"token": token, "items": [_shown(other) for other in sharing.patient_links(link)]},
        )
    )


@require_GET
def share_pdf(request: HttpRequest, token: str) -> HttpResponse:
    link = _open(request, token, page="pdf")
    if isinstance(link, HttpResponse):
        return link
    url = request.build_absolute_uri(reverse("share-page", args=[token]))
    response = HttpResponse(
        pdf.report_pdf_bytes(link.report, share_url=url), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'inline; filename="report-{link.report_id}.pdf"'
    return _protect(response)


def _granted(request: HttpRequest, grant: str) -> ShareLink | HttpResponse:
    if _limited(request, "share-frames-ip", settings.HUB_SHARE_RATE_FRAMES, "ip"):
        return _too_many(request)
    try:
        link = sharing.viewer_grant_check(grant)
    except sharing.ShareLinkNotFoundError:
        return _refusal(
            request,
            404,
            _("Link not found"),
            _(
                "These images are no longer available from this page. Open the link "
                "you were given again."
            ),
        )
    if _limited(
        request,
        "share-frames-link",
        settings.HUB_SHARE_RATE_FRAMES,
        lambda _g, _r: f"link{link.pk}",
    ):
        return _too_many(request)
    return link


@require_GET
def share_viewer(request: HttpRequest, grant: str) -> HttpResponse:
    link = _granted(request, grant)
    if isinstance(link, HttpResponse):
        return link
    study = link.report.study
    series_list, viewer = viewer_data(
        series=sharing.shared_series(link),
        instances=sharing.shared_instances(link),
        base=request.path.rstrip("/"),
    )
    audit_record(
        event=AuditCode.IMAGES_VIEWED,
        action=AuditEvent.Action.READ,
        institution=link.created_for,
        request=request,
        username="patient-link",
        patient_id=study.pid,
        study_uid=study.study_uid,
        object_type="share_link",
        object_id=link.pk,
    )
    return _protect(
        render(
            request,
            "reporting/share_viewer.html",
            {
                "study": study,
                "series_list": series_list,
                "viewer": viewer,
                "viewable": {s["uid"] for s in viewer["series"]},
                "viewer_strings": viewer_strings(),
            },
        )
    )


@require_GET
def share_frame(
    request: HttpRequest, grant: str, series_uid: str, sop_uid: str, frame: int
) -> HttpResponse:
    """One rendered frame of the link's study (JPEG, or PNG with ?accept=image/png)."""
    link = _granted(request, grant)
    if isinstance(link, HttpResponse):
        return link
    try:
        instance = sharing.shared_instance(link, series_uid=series_uid, sop_uid=sop_uid)
    except sharing.ShareLinkNotFoundError:
        raise Http404 from None
    media_type = rendering.PNG if request.GET.get("accept") == rendering.PNG else rendering.JPEG
    try:
        options = rendering.render_options(request.GET, media_type)
        data = rendering.frame_render(instance, frame, options)
    except rendering.RenderError as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    response = HttpResponse(data, content_type=media_type)
    response["Referrer-Policy"] = "no-referrer"
    # Private and short: the grant ends, and the link can be revoked.
    response["Cache-Control"] = "private, max-age=300"
    return response
